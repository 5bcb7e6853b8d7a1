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

from tfp_vi_estimators._internal.tfp_internals import prefer_static as ps
from tfp_vi_estimators.distributions import construction, linalg_util, validation

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["MultivariateNormalTriLWithCustomGradient"]


def _delegate_to_multivariate_normal(method_name: str):
    """A `_<method_name>` answering with `tfd.MultivariateNormalTriL`'s method."""

    def method(self, *args):
        return getattr(self._multivariate_normal(), method_name)(*args)  # noqa: SLF001

    method.__name__ = method.__qualname__ = f"_{method_name}"
    return method


class MultivariateNormalTriLWithCustomGradient(
    construction.FullyReparameterizedDistribution
):
    """`tfd.MultivariateNormalTriL` with a pluggable sampling gradient.

    Subclasses implement `_sample_with_custom_gradient(loc, scale_tril, eps)`,
    returning `loc + scale_tril @ eps` with their own backward pass; `loc` and
    `scale_tril` arrive already broadcast to the batch shape and `eps` has
    shape `[n] + batch_shape + [d]`. For a given `seed` the noise `eps`, and
    hence the samples, are those of `tfd.MultivariateNormalTriL(loc,
    scale_tril).sample(seed=seed)`, so estimators can be compared on the same
    draws.
    """

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
        (d,) = validation.static_dimensions(loc, [-1])
        rows, cols = validation.static_dimensions(scale_tril, [-2, -1])
        validation.check_known_sizes_equal(
            rows,
            cols,
            f"{cls_name}: `scale_tril` must be square in its last two dimensions; "
            f"got {validation.describe(scale_tril)}.",
        )
        validation.check_known_sizes_equal(
            d,
            cols,
            f"{cls_name}: the event size of `loc` ({d}) must equal the size of "
            f"`scale_tril` ({cols}); got loc {validation.describe(loc)} and "
            f"scale_tril {validation.describe(scale_tril)}.",
        )

    @staticmethod
    def _loc_and_scale_tril_properties(dtype):
        """`ParameterProperties` of `loc` and `scale_tril`, for subclasses.

        Every subclass defines its own `_parameter_properties` (TFP warns when a
        subclass with a new `__init__` inherits them) and starts from these.
        """
        return dict(
            loc=tfp.util.ParameterProperties(event_ndims=1),
            scale_tril=tfp.util.ParameterProperties(
                event_ndims=2,
                shape_fn=lambda sample_shape: ps.concat(
                    [sample_shape, sample_shape[-1:]], axis=0
                ),
                default_constraining_bijector_fn=lambda: tfb.FillScaleTriL(
                    diag_shift=construction.machine_epsilon(dtype)
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

    _log_prob = _delegate_to_multivariate_normal("log_prob")
    _mean = _delegate_to_multivariate_normal("mean")
    _mode = _delegate_to_multivariate_normal("mode")
    _covariance = _delegate_to_multivariate_normal("covariance")
    _variance = _delegate_to_multivariate_normal("variance")
    _stddev = _delegate_to_multivariate_normal("stddev")
    _entropy = _delegate_to_multivariate_normal("entropy")

    def _default_event_space_bijector(self):
        return tfb.Identity(validate_args=self.validate_args)


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
