"""The constructor steps every distribution of this package shares.

Each distribution here is fully reparameterized and keeps its tensor
parameters by reference (a `tf.Variable` stays a variable, so gradients reach
it). Its `__init__` records `parameters = dict(locals())`, checks its own
arguments statically (messages name the class and the argument), then calls
`_initialize(parameters, tensor_names)`, which does the rest the same way for
every class: resolve the one floating dtype of the tensor parameters, open
the name scope, convert each tensor parameter to `self._<name>` and call
`tfd.Distribution.__init__`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.distributions import validation

tfd = tfp.distributions

__all__ = ["FullyReparameterizedDistribution", "machine_epsilon"]


class FullyReparameterizedDistribution(tfd.AutoCompositeTensorDistribution):
    """Base class holding the shared constructor steps (see the module docstring)."""

    def _initialize(
        self, parameters: dict[str, Any], tensor_names: tuple[str, ...]
    ) -> None:
        """Converts the tensor parameters and initializes the `tfd.Distribution`.

        Args:
          parameters: the subclass `__init__`'s `dict(locals())`: its tensor
            parameters by name, `validate_args`, `allow_nan_stats` and `name`.
          tensor_names: the names of the tensor parameters (None values allowed,
            kept as None), in the order a dtype conflict lists them. Each is
            stored as `self._<name>`.

        Raises:
          TypeError: if two tensor parameters carry different dtypes.
        """
        dtype = validation.common_float_dtype(
            {key: parameters[key] for key in tensor_names}
        )
        with tf.name_scope(parameters["name"]) as name:
            for key in tensor_names:
                converted = validation.convert_parameter(parameters[key], dtype, key)
                setattr(self, f"_{key}", converted)
            super().__init__(
                dtype=dtype,
                reparameterization_type=tfd.FULLY_REPARAMETERIZED,
                validate_args=parameters["validate_args"],
                allow_nan_stats=parameters["allow_nan_stats"],
                parameters=parameters,
                name=name,
            )


def machine_epsilon(dtype: Any) -> float:
    """The gap between 1 and the next larger number of floating `dtype`.

    The lower bound that default constraining bijectors keep parameters above
    (a positive temperature, a non-zero diagonal of `scale_tril`).
    """
    return np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps
