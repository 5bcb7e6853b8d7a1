"""Shared base of the multivariate normals whose sampling gradient is custom.

`OMTMultivariateNormal` and `AVFMultivariateNormal` are the ordinary
`tfd.MultivariateNormalTriL` in every respect but one: the backward pass of
`sample()`. This module holds everything they share (construction, argument
checks, densities and moments delegated to `tfd.MultivariateNormalTriL`, the
sampling of the standard-normal noise) so each subclass only writes its
gradient.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors import fill_scale_tril, identity
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
)
from tensorflow_probability.python.internal import prefer_static as ps

from tfp_vi_estimators.distributions import linalg_util, validation

tfd = tfp.distributions

__all__ = ["MultivariateNormalTriLWithCustomGradient"]


class MultivariateNormalTriLWithCustomGradient(tfd.AutoCompositeTensorDistribution):
    """`tfd.MultivariateNormalTriL` with a pluggable sampling gradient.

    Subclasses implement `_sample_with_custom_gradient(loc, scale_tril, eps)`,
    returning `loc + scale_tril @ eps` with their own backward pass; `loc` and
    `scale_tril` arrive already broadcast to the batch shape and `eps` has
    shape `[n] + batch_shape + [d]`. For a given `seed` the noise `eps`, and
    hence the samples, are those of `tfd.MultivariateNormalTriL(loc,
    scale_tril).sample(seed=seed)`, so estimators can be compared on the same
    draws.
    """

    def __init__(
        self,
        loc: Any,
        scale_tril: Any,
        *,
        dtype: tf.DType,
        validate_args: bool,
        allow_nan_stats: bool,
        parameters: dict[str, Any],
        name: str,
    ) -> None:
        self._loc = validation.convert_parameter(loc, dtype, "loc")
        self._scale_tril = validation.convert_parameter(scale_tril, dtype, "scale_tril")
        super().__init__(
            dtype=dtype,
            reparameterization_type=tfd.FULLY_REPARAMETERIZED,
            validate_args=validate_args,
            allow_nan_stats=allow_nan_stats,
            parameters=parameters,
            name=name,
        )

    @staticmethod
    def _check_loc_and_scale_tril(loc: Any, scale_tril: Any, cls_name: str) -> None:
        """Checks `loc` ([..., d]) and `scale_tril` ([..., d, d]) statically."""
        validation.check_float_tensor_like(
            loc, "loc", min_rank=1, expected="of shape batch_shape + [d]"
        )
        validation.check_float_tensor_like(
            scale_tril,
            "scale_tril",
            min_rank=2,
            expected="of shape batch_shape + [d, d] (lower-triangular)",
        )
        loc_shape = validation.static_shape(loc)
        tril_shape = validation.static_shape(scale_tril)
        d = tf.compat.dimension_value(loc_shape[-1]) if loc_shape.rank else None
        rows, cols = (
            (
                tf.compat.dimension_value(tril_shape[-2]),
                tf.compat.dimension_value(tril_shape[-1]),
            )
            if tril_shape.rank
            else (None, None)
        )
        if rows is not None and cols is not None and rows != cols:
            raise ValueError(
                f"{cls_name}: `scale_tril` must be square in its last two dimensions; "
                f"got {validation.describe(scale_tril)}."
            )
        if d is not None and cols is not None and d != cols:
            raise ValueError(
                f"{cls_name}: the event size of `loc` ({d}) must equal the size of "
                f"`scale_tril` ({cols}); got loc {validation.describe(loc)} and "
                f"scale_tril {validation.describe(scale_tril)}."
            )

    @staticmethod
    def _loc_and_scale_tril_properties(dtype):
        """`ParameterProperties` of `loc` and `scale_tril`, for subclasses.

        Every subclass defines its own `_parameter_properties` (TFP warns when a
        subclass with a new `__init__` inherits them) and starts from these.
        """
        return dict(
            loc=parameter_properties.ParameterProperties(event_ndims=1),
            scale_tril=parameter_properties.ParameterProperties(
                event_ndims=2,
                shape_fn=lambda sample_shape: ps.concat(
                    [sample_shape, sample_shape[-1:]], axis=0
                ),
                default_constraining_bijector_fn=lambda: fill_scale_tril.FillScaleTriL(
                    diag_shift=dtype_util.eps(dtype)
                ),
            ),
        )

    @property
    def loc(self) -> Any:
        """The location `loc`, shape `batch_shape + [d]`."""
        return self._loc

    @property
    def scale_tril(self) -> Any:
        """The lower-triangular scale, shape `batch_shape + [d, d]`."""
        return self._scale_tril

    @property
    def scale(self) -> tf.linalg.LinearOperatorLowerTriangular:
        """`scale_tril` as a `LinearOperator`, as `tfd.MultivariateNormalTriL` has."""
        return tf.linalg.LinearOperatorLowerTriangular(
            self._scale_tril, is_non_singular=True
        )

    def _multivariate_normal(self) -> tfd.MultivariateNormalTriL:
        return tfd.MultivariateNormalTriL(
            loc=self._loc,
            scale_tril=self._scale_tril,
            validate_args=self.validate_args,
            allow_nan_stats=self.allow_nan_stats,
        )

    def _event_shape(self):
        return validation.static_shape(self._loc)[-1:].merge_with(
            validation.static_shape(self._scale_tril)[-1:]
        )

    def _event_shape_tensor(self):
        return ps.shape(self._scale_tril)[-1:]

    def _sample_n(self, n, seed=None):
        loc = tf.convert_to_tensor(self._loc)
        scale_tril = tf.convert_to_tensor(self._scale_tril)
        batch_shape = self.batch_shape_tensor()
        event_shape = self.event_shape_tensor()
        # The same construction as tfd.MultivariateNormalTriL's base
        # distribution, so one seed gives the same noise in both.
        eps = tfd.Sample(
            tfd.Normal(tf.zeros(batch_shape, self.dtype), tf.ones([], self.dtype)),
            event_shape,
        ).sample(n, seed=seed)
        loc = tf.broadcast_to(loc, ps.concat([batch_shape, event_shape], 0))
        # Like tfd.MultivariateNormalTriL, ignore the upper triangle.
        scale_tril = tf.broadcast_to(
            linalg_util.lower_triangle(scale_tril),
            ps.concat([batch_shape, event_shape, event_shape], 0),
        )
        return self._sample_with_custom_gradient(loc, scale_tril, eps)

    def _sample_with_custom_gradient(self, loc, scale_tril, eps):
        raise NotImplementedError(
            f"{type(self).__name__} must implement _sample_with_custom_gradient."
        )

    def _log_prob(self, x):
        return self._multivariate_normal().log_prob(x)

    def _mean(self):
        return self._multivariate_normal().mean()

    def _mode(self):
        return self._multivariate_normal().mode()

    def _covariance(self):
        return self._multivariate_normal().covariance()

    def _variance(self):
        return self._multivariate_normal().variance()

    def _stddev(self):
        return self._multivariate_normal().stddev()

    def _entropy(self):
        return self._multivariate_normal().entropy()

    def _default_event_space_bijector(self):
        return identity.Identity(validate_args=self.validate_args)


def _as_multivariate_normal(dist: tfd.Distribution) -> tfd.Distribution:
    if isinstance(dist, MultivariateNormalTriLWithCustomGradient):
        return dist._multivariate_normal()  # noqa: SLF001
    return dist


@tfd.RegisterKL(
    MultivariateNormalTriLWithCustomGradient, tfd.MultivariateNormalLinearOperator
)
@tfd.RegisterKL(
    tfd.MultivariateNormalLinearOperator, MultivariateNormalTriLWithCustomGradient
)
@tfd.RegisterKL(
    MultivariateNormalTriLWithCustomGradient, MultivariateNormalTriLWithCustomGradient
)
def _kl_multivariate_normal(a, b, name=None):
    """KL divergence between normals, delegated to `tfd.MultivariateNormalTriL`."""
    return tfd.kl_divergence(
        _as_multivariate_normal(a), _as_multivariate_normal(b), name=name
    )
