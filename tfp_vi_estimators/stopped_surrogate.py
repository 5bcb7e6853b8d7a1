"""Surrogate log-densities with stopped parameters, built automatically.

The doubly reparameterized estimator needs `log q_{stop(phi)}(z)`: the
surrogate's log-density whose gradient reaches the sample `z` but not the
surrogate's parameters. `tfp.vi` makes the user build a stopped copy of the
surrogate by hand; here it is built for any surrogate:

1. **Parameter-level copy** (cheap: one extra `log_prob`). The surrogate and,
   recursively, every distribution and bijector among its parameters, is
   rebuilt with `copy()` and every tensor-like parameter (a `tf.Variable`, a
   `tfp.util.TransformedVariable` / `DeferredTensor`, a tensor computed by an
   encoder) replaced by `tf.stop_gradient` of its value.
2. **Gradient-path cancellation** (general: two `log_prob`s). When a parameter
   cannot be stopped by copying (a `JointDistribution` model given as
   lambdas, a bijector with a trainable network such as a masked
   autoregressive flow, a Keras layer), the density is evaluated twice:

   ```none
   log q'(z) = log q_phi(z) - (log q_phi(stop z) - stop(log q_phi(stop z)))
   ```

   The value is `log q_phi(z)`; the parameter gradients of the two terms are
   equal and cancel exactly, leaving only the gradient through `z`. The first
   evaluation sees a fresh tensor (`tf.identity(z)`) so TFP's bijector cache
   cannot hand back the pre-image it stored while sampling, which would route
   the gradient around `z`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.parameter_maps import CannotCopy, map_tensor_parameters
from tfp_vi_estimators._internal.surrogates import as_distribution

tfd = tfp.distributions

__all__ = ["stopped_copy", "stopped_log_prob_fn"]


def _stopped_copy(distribution):
    return map_tensor_parameters(distribution, tf.stop_gradient)


def stopped_copy(distribution):
    """A copy of `distribution` whose parameters carry no gradient.

    Args:
      distribution: a `tfp.distributions.Distribution`.

    Returns:
      A distribution of the same class whose tensor-like parameters, at any
      depth (nested distributions and bijectors included), are
      `tf.stop_gradient` of the originals' current values.

    Raises:
      TypeError: if `distribution` is not a `tfd.Distribution`.
      ValueError: if some parameter cannot be stopped by copying (a callable,
        a trainable network); use `stopped_log_prob_fn`, which falls back to
        gradient-path cancellation.
    """
    if not isinstance(distribution, tfd.Distribution):
        raise TypeError(
            "`distribution` must be a tfp.distributions.Distribution; got "
            f"{type(distribution).__name__}."
        )
    try:
        return _stopped_copy(distribution)
    except CannotCopy as e:
        raise ValueError(
            f"Cannot build a stopped copy of {distribution.name!r}: parameter of "
            f"type {e} cannot be stopped by copying."
        ) from None


def _log_prob_with_sample_gradient_only(distribution, value):
    live = distribution.log_prob(tf.nest.map_structure(tf.identity, value))
    params_only = distribution.log_prob(tf.nest.map_structure(tf.stop_gradient, value))
    return live - (params_only - tf.stop_gradient(params_only))


def stopped_log_prob_fn(surrogate_posterior, stopped_surrogate_posterior=None):
    """`log q_{stop(phi)}` as a callable, choosing the cheapest correct route.

    Args:
      surrogate_posterior: the surrogate `tfd.Distribution`.
      stopped_surrogate_posterior: optional user-built stopped copy; used as
        given when not `None`.

    Returns:
      A callable `value -> log_prob` whose gradient reaches `value` but not the
      surrogate's parameters.
    """
    if stopped_surrogate_posterior is not None:
        return stopped_surrogate_posterior.log_prob
    try:
        return _stopped_copy(as_distribution(surrogate_posterior)).log_prob
    except CannotCopy:
        return lambda value: _log_prob_with_sample_gradient_only(
            surrogate_posterior, value
        )
