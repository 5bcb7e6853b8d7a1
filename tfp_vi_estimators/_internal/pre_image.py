"""Samples that keep their pre-image, and `log q_{stop(phi)}` read from it.

A bijector-transformed surrogate draws `x` from its base and returns
`y = T_phi(x)`. The doubly reparameterized estimators need the log-density
with stopped parameters at `y`, whose value and gradient with respect to `y`
are

```none
log q(y)          = log p_0(x) - log |det J_T(x)|          (x = T^{-1}(y))
d log q(y) / dy   = J_T(x)^{-T} d/dx [log p_0(x) - log |det J_T(x)|]
```

Recomputing `x = T^{-1}(y)` (a forward triangular solve for a full-rank
Gaussian, a bijector inverse for a flow) is unnecessary: the sampler had `x`.
`sample_with_pre_image` draws exactly as TFP's
`TransformedDistribution.experimental_sample_and_log_prob` does (same ops in
the same order, so the same samples as `tfp.vi` for the same seed) and keeps
`x` and `log q(y)`; `stopped_log_prob_from_pre_image` returns the value above
with a `tf.custom_gradient` whose backward pass is

- for an affine bijector (`Shift`, `Scale`, `ScaleMatvecDiag`,
  `ScaleMatvecTriL`, `ScaleMatvecLinearOperator`, a `Chain` of those), where
  `J_T` does not depend on `x`: the gradient of the base log-density at `x`
  followed by one transpose solve `A^{-T} g` per bijector (one triangular solve
  with all draws as right-hand sides for a full-rank Gaussian);
- for any other injective bijector (a masked autoregressive flow, ...): one
  `log_prob` at `y` and its vector-Jacobian product with respect to `y` only
  (for a MAF the inverse is the flow's one-pass direction, and the pre-image
  gives no shortcut: `J_T^{-T}` is a sequential solve), never the parameter
  half of that product; the stopped copy route evaluated `log_prob` twice.

Other surrogates have no pre-image here (`None`); the sampler falls back to
`stopped_surrogate.stopped_log_prob_fn`.
"""

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.surrogates import as_distribution
from tfp_vi_estimators._internal.tfp_internals import TransformedDistributionBase

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "PreImageSample",
    "has_pre_image",
    "sample_with_pre_image",
    "push_forward_with_pre_image",
    "stopped_log_prob_from_pre_image",
]

_AFFINE_DIAGONAL = (tfb.Scale, tfb.ScaleMatvecDiag)


@dataclasses.dataclass(frozen=True)
class PreImageSample:
    """A bijector-transformed sample and what the sampler knew when drawing it.

    Attributes:
      samples: `y = T(x)`, `sample_shape + batch + event`.
      pre_image: the base sample `x`, shaped like `samples`.
      log_prob: `log q(y) = log p_0(x) - log |det J_T(x)|`, live (as TFP's
        `experimental_sample_and_log_prob` returns it).
      surrogate: the `tfd.TransformedDistribution` drawn from.
    """

    samples: Any
    pre_image: Any
    log_prob: Any
    surrogate: Any


def has_pre_image(surrogate) -> bool:
    """Whether `sample_with_pre_image` serves `surrogate` with TFP's own samples.

    A `tfd.TransformedDistribution` (`MultivariateNormalTriL`,
    `MultivariateNormalDiag`, flows, ...) that samples with TFP's generic
    method, has an injective bijector, a base with the same (static, fully
    defined) batch shape, and a bijector that maps event shapes to themselves.
    """
    q = as_distribution(surrogate)
    generic = TransformedDistributionBase
    if not isinstance(q, generic):
        return False
    # A subclass that samples its own way has no pre-image we can keep.
    for method in ("_call_sample_n", "_sample_and_log_prob"):
        if getattr(type(q), method) is not getattr(generic, method):
            return False
    base = q.distribution
    return (
        getattr(q.bijector, "_is_injective", False)
        and not tf.nest.is_nested(base.dtype)
        and q.batch_shape.is_fully_defined()
        and base.batch_shape == q.batch_shape
        and base.event_shape.is_fully_defined()
        and base.event_shape == q.event_shape
    )


def _event_ndims(q):
    return q.distribution.event_shape.rank


def push_forward_with_pre_image(surrogate, pre_image, base_log_prob):
    """`y = T(x)` and `log q(y)` from a base sample, in TFP's order of ops."""
    q = as_distribution(surrogate)
    samples = q.bijector.forward(pre_image)
    fldj = q.bijector.forward_log_det_jacobian(pre_image, event_ndims=_event_ndims(q))
    log_prob = base_log_prob - tf.cast(fldj, base_log_prob.dtype)
    return PreImageSample(samples, pre_image, log_prob, q)


def sample_with_pre_image(surrogate, sample_shape, seed) -> PreImageSample:
    """Draws as `surrogate.experimental_sample_and_log_prob`, keeping `x`.

    The same ops as TFP's `TransformedDistribution._sample_and_log_prob`, so
    the samples and `log_prob` equal TFP's for the same seed.
    """
    q = as_distribution(surrogate)
    pre_image, base_log_prob = q.distribution.experimental_sample_and_log_prob(
        sample_shape, seed=seed
    )
    return push_forward_with_pre_image(q, pre_image, base_log_prob)


def _is_affine(bijector):
    if isinstance(bijector, tfb.Chain):
        return all(_is_affine(b) for b in bijector.bijectors)
    return isinstance(
        bijector, (tfb.Shift, tfb.ScaleMatvecLinearOperator, *_AFFINE_DIAGONAL)
    )


def _solve_adjoint(operator, adjoint, vectors):
    """`A^{-T} v` for every vector `v` of `vectors` (`[..., D]`)."""
    if operator.batch_shape.rank == 0 and vectors.shape.rank is not None:
        # One solve with every draw as a right-hand side, instead of a batch
        # of matrix-vector solves that broadcasts the operator over the draws.
        flat = tf.reshape(vectors, [-1, tf.shape(vectors)[-1]])
        solved = operator.solve(tf.transpose(flat), adjoint=not adjoint)
        return tf.reshape(tf.transpose(solved), tf.shape(vectors))
    return operator.solvevec(vectors, adjoint=not adjoint)


def _inverse_transpose(bijector, cotangent):
    """`J^{-T} g` for an affine bijector (its Jacobian does not depend on x)."""
    if isinstance(bijector, tfb.Chain):
        # y = b_1(b_2(...b_n(x))): J^{-T} = J_1^{-T} ... J_n^{-T}, innermost first.
        for b in reversed(bijector.bijectors):
            cotangent = _inverse_transpose(b, cotangent)
        return cotangent
    if isinstance(bijector, tfb.Shift):
        return cotangent
    if isinstance(bijector, _AFFINE_DIAGONAL):
        return bijector.inverse(cotangent)  # diagonal: A^{-T} = A^{-1}
    return _solve_adjoint(bijector.scale, bijector.adjoint, cotangent)


def _affine_path_gradient(drawn, upstream):
    """`upstream * d log q / dy` at the drawn points, from the pre-image only."""
    x = tf.stop_gradient(drawn.pre_image)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        base_log_prob = drawn.surrogate.distribution.log_prob(x)
    base_gradient = tape.gradient(base_log_prob, x, output_gradients=upstream)
    return _inverse_transpose(drawn.surrogate.bijector, base_gradient)


def _with_path_gradient(value, path_gradient, samples):
    """`value`, with `path_gradient(upstream)` as the gradient to `samples`."""

    @tf.custom_gradient
    def stopped_log_prob(y):
        del y  # the value is already known; only the gradient is custom
        return tf.identity(value), path_gradient

    return stopped_log_prob(samples)


def _affine_stopped_log_prob(drawn, samples):
    """Value from the pre-image, gradient by transpose solves: no T^{-1}."""
    return _with_path_gradient(
        tf.stop_gradient(drawn.log_prob),
        lambda upstream: _affine_path_gradient(drawn, upstream),
        samples,
    )


def _general_stopped_log_prob(drawn, samples):
    """One `log_prob` at the samples, differentiated in the samples only."""
    y = tf.identity(tf.stop_gradient(samples))  # fresh: no bijector-cache hit
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(y)
        log_prob = drawn.surrogate.log_prob(y)
    return _with_path_gradient(
        tf.stop_gradient(log_prob),
        lambda upstream: tape.gradient(log_prob, y, output_gradients=upstream),
        samples,
    )


def stopped_log_prob_from_pre_image(drawn: PreImageSample, samples):
    """`log q_{stop(phi)}(samples)` whose gradient reaches `samples` only.

    Args:
      drawn: the `PreImageSample` the samples came from.
      samples: `drawn.samples` as the target sees them (possibly passed through
        a `GradientScale`); equal in value to `drawn.samples`.

    Returns:
      `Tensor` `sample_shape + batch`: `log q(samples)` with stopped
      parameters and the exact path gradient `d log q / dy` to `samples`. For
      an affine bijector the value is `drawn.log_prob` (from the pre-image) and
      the backward pass solves `A^T g = grad log p_0(x)`; for any other
      bijector the value is one `log_prob` at the samples (for a masked
      autoregressive flow its one-pass direction) and the backward pass is its
      vector-Jacobian product in the samples only, never in the parameters.
    """
    if _is_affine(drawn.surrogate.bijector):
        return _affine_stopped_log_prob(drawn, samples)
    return _general_stopped_log_prob(drawn, samples)
