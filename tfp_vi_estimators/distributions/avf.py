"""Multivariate normal with adaptive-velocity-field control variates."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.tfp_internals import prefer_static as ps
from tfp_vi_estimators.distributions import linalg_util, mvn_base, validation

__all__ = ["AVFMultivariateNormal"]


class AVFMultivariateNormal(mvn_base.MultivariateNormalTriLWithCustomGradient):
    """Multivariate normal with adaptive velocity fields (AVF) as control variate.

    Samples, densities and moments are those of
    `tfd.MultivariateNormalTriL(loc, scale_tril)`; only the backward pass of
    `sample()` differs. Any velocity field that solves the transport equation
    gives an unbiased pathwise gradient [1]; adding infinitesimal rotations of
    the whitened noise to the reparameterization field keeps it a solution, so
    the rotation term is a zero-mean control variate. Its weights
    (`control_var`) are learned to minimize the estimator's second moment.

    With `n` samples `z_n = loc + L eps_n`, upstream gradients
    `g_n = dLoss/dz_n`, `B = control_var[..., 0, :, :]` and
    `C = control_var[..., 1, :, :]` (each `[num_components, d]`):

    ```none
    grad_loc = sum_n g_n
    A        = sum_n (L^T g_n) eps_n^T,          xi = A - A^T
    grad_L   = tril( sum_n g_n eps_n^T + xi * (B^T C) )
             = tril( sum_n g_n eps_n^T + sum_l xi * (B_l C_l^T) )
    grad_control_var = d/d(B, C) of 1/2 ||grad_L||_F^2
    ```

    (`*` is elementwise.) `E[xi] = 0` (Stein's lemma makes `E[(L^T g) eps^T]`
    symmetric), so `grad_L` is unbiased for every `control_var`. The "gradient"
    handed to `control_var` is not the gradient of the loss: it is that of
    `1/2 ||grad_L||_F^2`, whose expectation differs from the variance of
    `grad_L` by a constant; so one optimizer applied to all trainable variables
    trains the control variate alongside the model. Cost `O(n d^2 + l d^2)`.

    Notes:
    * Initialize `control_var` with small random values, not zeros: zero is a
      stationary point of the second-moment objective (the gradient for `B` is
      proportional to `C` and vice versa). A zero `control_var` gives exactly
      the plain reparameterization gradient.
    * Only the pathwise part of the gradient of `scale_tril` enters the
      objective; terms where `scale_tril` is used directly (for example in
      `log_prob`) are added by autodiff after the custom gradient.
    * The custom gradient is first order (no Hessians).

    #### References

    [1]: Martin Jankowiak and Fritz Obermeyer, ICML 2018 (see
         `OMTMultivariateNormal`); Pyro's `AVFMultivariateNormal`,
         https://docs.pyro.ai/en/stable/distributions.html
    """

    def __init__(
        self,
        loc: Any,
        scale_tril: Any,
        control_var: Any,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "AVFMultivariateNormal",
    ) -> None:
        """Builds the distribution and names its control variate.

        Args:
          loc: the mean, as for `OMTMultivariateNormal`.
          scale_tril: the lower-triangular scale, as for `OMTMultivariateNormal`.
          control_var: floating `Tensor` (usually a `tf.Variable`) of shape
            `batch_shape + [2, num_components, d]`: `control_var[..., 0, :, :]`
            is `B` and `control_var[..., 1, :, :]` is `C`. A single tensor
            rather than a `(B, C)` pair, so that it is one parameter of the
            distribution (`copy()`, batch slicing, `tf.function` arguments all
            work). Pyro's layout `(2, num_components, d)` is the unbatched
            case; it broadcasts over the batch, the control variate is then
            shared and its objective summed over the batch members.
          validate_args: check parameters at run time (Python `bool`).
          allow_nan_stats: as in every TFP distribution.
          name: the ops' name scope.

        Raises:
          TypeError: if an argument is None, non-floating, or the dtypes differ.
          ValueError: if the static shapes are not `[..., d]`, `[..., d, d]` and
            `[..., 2, num_components, d]`.
        """
        parameters = dict(locals())
        self._check_loc_and_scale_tril(loc, scale_tril, type(self).__name__)
        _check_control_var(control_var, loc)
        self._initialize(parameters, ("loc", "scale_tril", "control_var"))

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            cls._loc_and_scale_tril_properties(dtype),
            control_var=tfp.util.ParameterProperties(
                event_ndims=3,
                shape_fn=lambda sample_shape: ps.concat(
                    [[2, 1], sample_shape[-1:]], axis=0
                ),
            ),
        )

    @property
    def control_var(self) -> Any:
        """The control-variate weights, shape `batch_shape + [2, l, d]`."""
        return self._control_var

    def _sample_with_custom_gradient(self, loc, scale_tril, eps):
        control_var = tf.convert_to_tensor(self._control_var)
        shape = ps.concat([ps.shape(loc)[:-1], ps.shape(control_var)[-3:]], axis=0)
        control_var = tf.broadcast_to(control_var, shape)

        @tf.custom_gradient
        def sample(loc, scale_tril, control_var, eps):
            def grad(upstream):
                return (
                    tf.reduce_sum(upstream, axis=0),
                    *_avf_gradients(scale_tril, control_var, eps, upstream),
                    None,
                )

            return loc + tf.linalg.matvec(scale_tril, eps), grad

        return sample(loc, scale_tril, control_var, eps)


def _avf_gradients(scale_tril, control_var, eps, upstream):
    """Gradients for `scale_tril` and `control_var` (class docstring formulas)."""
    b, c = control_var[..., 0, :, :], control_var[..., 1, :, :]
    a = linalg_util.sum_of_outer_products(
        tf.linalg.matvec(scale_tril, upstream, adjoint_a=True), eps
    )
    xi = a - tf.linalg.matrix_transpose(a)
    control_variate = xi * tf.linalg.matmul(b, c, transpose_a=True)
    scale_tril_grad = linalg_util.lower_triangle(
        linalg_util.sum_of_outer_products(upstream, eps) + control_variate
    )
    weighted_xi = scale_tril_grad * xi
    b_grad = tf.linalg.matmul(c, weighted_xi, transpose_b=True)
    c_grad = tf.linalg.matmul(b, weighted_xi)
    return scale_tril_grad, tf.stack([b_grad, c_grad], axis=-3)


def _check_control_var(control_var: Any, loc: Any) -> None:
    expected = "of shape batch_shape + [2, num_components, d]"
    validation.check_float_tensor_like(
        control_var, "control_var", min_rank=3, expected=expected
    )
    pair, d = validation.static_dimensions(control_var, [-3, -1])
    (loc_d,) = validation.static_dimensions(loc, [-1])
    validation.check_known_sizes_equal(
        pair,
        2,
        f"`control_var` must have size 2 in dimension -3 (the (B, C) pair), "
        f"{expected}; got {validation.describe(control_var)}.",
    )
    validation.check_known_sizes_equal(
        d,
        loc_d,
        f"The last dimension of `control_var` ({d}) must equal the event size "
        f"d = {loc_d} of `loc`, {expected}; got "
        f"{validation.describe(control_var)}.",
    )
