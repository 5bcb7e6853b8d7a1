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

A transformed surrogate whose base is a `JointDistribution` (what
`tfp.experimental.vi.build_factored_surrogate_posterior` builds for a
structured event: a `JointMap` of bijectors over independent normals) takes
the general route on the structure.

A `JointDistribution` surrogate with a bijector-transformed part (a
`MultivariateNormalTriL`, a `LogNormal`, a flow) is drawn part by part as TFP
draws it (`joint_parts.run_model`, the same seeds), keeping each transformed
part's pre-image (`JointPreImage`). When no part depends on another (every
part is a root of the model), `log q_{stop(phi)}` is the sum of the parts',
each read from its pre-image as above or, for a part without one, from the
stopped copy the caller supplies; the parts' gradients reach their own
samples only, which is exact because a root part's density depends on no
other part. When some part depends on its parents, its stopped density must
pass gradient to the parents' samples too, which a per-part route cannot give;
the whole surrogate's stopped copy is used (`stopped_log_prob_fn`).

A distribution may also draw through a pre-image of its own (the relaxed
straight-through distributions: a hard sample rounded from a relaxed one).
It says so by providing the hook

```none
sample_with_pre_image(sample_shape, seed) -> (samples, pre_image)
log_prob_of_pre_image(pre_image)          -> log q at the samples drawn from it,
                                             under that instance's parameters
```

and `log q_{stop(phi)}` is then `log_prob_of_pre_image` of a copy with
stopped parameters, its gradient flowing through the pre-image (which a
path transform of the samples, such as the doubly reparameterized
estimator's gradient scaling, must reach too: `with_path_transform`).

Other surrogates have no pre-image here; the sampler falls back to
`stopped_surrogate.stopped_log_prob_fn`.
"""

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import joint_parts
from tfp_vi_estimators._internal.parameter_maps import CannotCopy, map_tensor_parameters
from tfp_vi_estimators._internal.surrogates import as_distribution
from tfp_vi_estimators._internal.tfp_internals import TransformedDistributionBase

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "JointPreImage",
    "PreImageSample",
    "has_pre_image",
    "joint_pre_image",
    "sample_with_pre_image",
    "push_forward_with_pre_image",
    "samples_generically",
    "stopped_log_prob_from_pre_image",
    "with_path_transform",
]

_AFFINE_DIAGONAL = (tfb.Scale, tfb.ScaleMatvecDiag)


@dataclasses.dataclass(frozen=True)
class PreImageSample:
    """A bijector-transformed sample and what the sampler knew when drawing it.

    Attributes:
      samples: `y = T(x)`, `sample_shape + batch + event` (a structure for a
        joint base).
      pre_image: the base sample `x` (shaped like `samples` unless the base
        is a joint distribution).
      log_prob: `log q(y) = log p_0(x) - log |det J_T(x)|`, live (as TFP's
        `experimental_sample_and_log_prob` returns it).
      surrogate: the `tfd.TransformedDistribution` drawn from.
    """

    samples: Any
    pre_image: Any
    log_prob: Any
    surrogate: Any


@dataclasses.dataclass(frozen=True)
class JointPreImage:
    """A joint surrogate's sample, with the pre-image of each transformed part.

    Attributes:
      samples: the sample structure.
      log_prob: `log q` at `samples`, live (as TFP's
        `experimental_sample_and_log_prob` returns it).
      parts: per part, in the model's order: its `PreImageSample`, or its
        distribution (built from its parents' values) where it has none.
      independent: no part depends on another.
      surrogate: the `tfd.JointDistribution` drawn from.
    """

    samples: Any
    log_prob: Any
    parts: tuple
    independent: bool
    surrogate: Any


def samples_generically(q):
    """A `TransformedDistribution` that samples by TFP's generic method."""
    generic = TransformedDistributionBase
    if not isinstance(q, generic):
        return False
    # A subclass that samples its own way has no pre-image we can keep.
    return all(
        getattr(type(q), method) is getattr(generic, method)
        for method in ("_call_sample_n", "_sample_and_log_prob")
    )


def _static_shapes(shapes):
    return all(s.is_fully_defined() for s in tf.nest.flatten(shapes))


def _transformed_has_pre_image(q):
    if not (samples_generically(q) and getattr(q.bijector, "_is_injective", False)):
        return False
    base = q.distribution
    if tf.nest.is_nested(base.dtype):  # TFP does not broadcast a joint base
        return _static_shapes(base.batch_shape) and _static_shapes(base.event_shape)
    return (
        q.batch_shape.is_fully_defined()
        and base.batch_shape == q.batch_shape
        and base.event_shape.is_fully_defined()
        and base.event_shape == q.event_shape
    )


def _joint_has_pre_image(q):
    if joint_parts.is_vectorized(q):
        return False  # one draw per lane: a part's parents cannot be told
    return any(
        has_pre_image(part) and not joint_parts.is_joint(part)
        for part in joint_parts.single_sample_parts(q)
    )


def has_own_pre_image(distribution) -> bool:
    """Whether `distribution` provides the pre-image hook (module docstring)."""
    return all(
        callable(getattr(distribution, method, None))
        for method in ("sample_with_pre_image", "log_prob_of_pre_image")
    )


def has_pre_image(surrogate) -> bool:
    """Whether `sample_with_pre_image` serves `surrogate` with TFP's own samples.

    A `tfd.TransformedDistribution` (`MultivariateNormalTriL`,
    `MultivariateNormalDiag`, flows, ...) that samples with TFP's generic
    method and has an injective bijector: with a joint base, of static
    shapes; else with a base of the same (static) batch and event shapes. Or
    a `JointDistribution` (not run under `tf.vectorized_map`) with such a part.
    Or a distribution with the pre-image hook (`has_own_pre_image`).
    """
    q = as_distribution(surrogate)
    if joint_parts.is_joint(q):
        return _joint_has_pre_image(q)
    return has_own_pre_image(q) or _transformed_has_pre_image(q)


def _event_ndims(q):
    return tf.nest.map_structure(lambda shape: shape.rank, q.distribution.event_shape)


def push_forward_with_pre_image(surrogate, pre_image, base_log_prob):
    """`y = T(x)` and `log q(y)` from a base sample, in TFP's order of ops."""
    q = as_distribution(surrogate)
    samples = q.bijector.forward(pre_image)
    fldj = q.bijector.forward_log_det_jacobian(pre_image, event_ndims=_event_ndims(q))
    log_prob = base_log_prob - tf.cast(fldj, base_log_prob.dtype)
    return PreImageSample(samples, pre_image, log_prob, q)


def joint_pre_image(joint, traced):
    """A `JointPreImage` from `(value, log_prob, part, is_root)` per part."""
    values, log_probs, parts, roots = zip(*traced, strict=True)
    return JointPreImage(
        samples=joint_parts.unflatten(joint, list(values)),
        log_prob=joint_parts.total_log_prob(joint, list(log_probs)),
        parts=tuple(parts),
        independent=all(roots),
        surrogate=joint,
    )


def _draw_part(step):
    """One part as TFP draws it, keeping its pre-image if it has one."""
    q = step.distribution
    if has_pre_image(q) and not joint_parts.is_joint(q):
        drawn = sample_with_pre_image(q, step.sample_shape, step.seed)
        return drawn.samples, (drawn.samples, drawn.log_prob, drawn, step.is_root)
    value, log_prob = q.experimental_sample_and_log_prob(
        step.sample_shape, seed=step.seed
    )
    return value, (value, log_prob, q, step.is_root)


def sample_with_pre_image(surrogate, sample_shape, seed):
    """Draws as `surrogate.experimental_sample_and_log_prob`, keeping `x`.

    The same ops as TFP's `TransformedDistribution._sample_and_log_prob` (and,
    for a joint surrogate, its part-by-part sampling with the same seeds), so
    the samples and `log_prob` equal TFP's for the same seed.

    Returns:
      A `PreImageSample`, or a `JointPreImage` for a joint surrogate.
    """
    q = as_distribution(surrogate)
    if joint_parts.is_joint(q):
        return joint_pre_image(
            q, joint_parts.run_model(q, _draw_part, sample_shape, seed)
        )
    if has_own_pre_image(q):
        samples, pre_image = q.sample_with_pre_image(sample_shape, seed=seed)
        return PreImageSample(samples, pre_image, q.log_prob_of_pre_image(pre_image), q)
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
    """`value`, with `path_gradient(upstream)` as the gradient to `samples`
    (a tensor or a structure of tensors)."""

    @tf.custom_gradient
    def stopped_log_prob(*flat_samples):
        del flat_samples  # the value is already known; only the gradient is custom
        return tf.identity(value), lambda upstream: tf.nest.flatten(
            path_gradient(upstream)
        )

    return stopped_log_prob(*tf.nest.flatten(samples))


def _affine_stopped_log_prob(drawn, samples):
    """Value from the pre-image, gradient by transpose solves: no T^{-1}."""
    return _with_path_gradient(
        tf.stop_gradient(drawn.log_prob),
        lambda upstream: _affine_path_gradient(drawn, upstream),
        samples,
    )


def _general_stopped_log_prob(drawn, samples):
    """One `log_prob` at the samples, differentiated in the samples only."""
    # Fresh tensors: no bijector-cache hit hands back the drawn pre-image.
    y = tf.nest.map_structure(lambda t: tf.identity(tf.stop_gradient(t)), samples)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(y)
        log_prob = drawn.surrogate.log_prob(y)

    def path_gradient(upstream):
        grads = tape.gradient(log_prob, y, output_gradients=upstream)
        return tf.nest.map_structure(
            lambda g, t: tf.zeros_like(t) if g is None else g, grads, y
        )

    return _with_path_gradient(tf.stop_gradient(log_prob), path_gradient, samples)


def _joint_stopped_log_prob(drawn, samples, stopped_log_prob_fn):
    """The parts' stopped densities, summed as TFP sums them (independent
    parts), or the whole surrogate's stopped copy (dependent parts)."""
    if not drawn.independent:
        return stopped_log_prob_fn(drawn.surrogate)(samples)
    values = joint_parts.flatten(drawn.surrogate, samples)
    part_log_probs = [
        stopped_log_prob_from_pre_image(part, value)
        if isinstance(part, PreImageSample)
        else stopped_log_prob_fn(part)(value)
        for part, value in zip(drawn.parts, values, strict=True)
    ]
    return joint_parts.total_log_prob(drawn.surrogate, part_log_probs)


def with_path_transform(drawn, transform):
    """`drawn` with `transform` (an identity in value) applied to the pre-images
    that carry a path gradient: those of distributions with their own hook.

    A bijector's pre-image is read stopped, so it is left alone.
    """
    if isinstance(drawn, JointPreImage):
        parts = tuple(
            with_path_transform(part, transform)
            if isinstance(part, PreImageSample)
            else part
            for part in drawn.parts
        )
        return dataclasses.replace(drawn, parts=parts)
    if drawn is None or not has_own_pre_image(drawn.surrogate):
        return drawn
    return dataclasses.replace(drawn, pre_image=transform(drawn.pre_image))


def _own_stopped_log_prob(drawn):
    """`log_prob_of_pre_image` with stopped parameters: a stopped copy's, or
    (parameters that cannot be copied) the parameter gradients cancelled."""
    try:
        stopped = map_tensor_parameters(drawn.surrogate, tf.stop_gradient)
    except CannotCopy:
        score = drawn.surrogate.log_prob_of_pre_image
        live = score(drawn.pre_image)
        params_only = score(tf.stop_gradient(drawn.pre_image))
        return live - (params_only - tf.stop_gradient(params_only))
    return stopped.log_prob_of_pre_image(drawn.pre_image)


def stopped_log_prob_from_pre_image(drawn, samples, stopped_log_prob_fn=None):
    """`log q_{stop(phi)}(samples)` whose gradient reaches `samples` only.

    Args:
      drawn: the `PreImageSample` or `JointPreImage` the samples came from.
      samples: `drawn.samples` as the target sees them (possibly passed through
        `gradient_scale.scalable`); equal in value to `drawn.samples`.
      stopped_log_prob_fn: for a `JointPreImage`, `distribution -> (value ->
        log q_stop(value))` (`stopped_surrogate.stopped_log_prob_fn`): the
        stopped density of a part without a pre-image, or of the whole joint
        surrogate when a part depends on another.

    Returns:
      `Tensor` `sample_shape + batch`: `log q(samples)` with stopped
      parameters and the exact path gradient `d log q / dy` to `samples`. For
      an affine bijector the value is `drawn.log_prob` (from the pre-image) and
      the backward pass solves `A^T g = grad log p_0(x)`; for any other
      bijector the value is one `log_prob` at the samples (for a masked
      autoregressive flow its one-pass direction) and the backward pass is its
      vector-Jacobian product in the samples only, never in the parameters.
      For a joint surrogate of independent parts, the sum of the parts'.
      For a distribution with its own pre-image hook, `log_prob_of_pre_image`
      of a copy with stopped parameters at `drawn.pre_image` (the gradient
      flows through the pre-image, not `samples`).
    """
    if isinstance(drawn, JointPreImage):
        return _joint_stopped_log_prob(drawn, samples, stopped_log_prob_fn)
    if has_own_pre_image(drawn.surrogate):
        return _own_stopped_log_prob(drawn)
    base_is_joint = tf.nest.is_nested(drawn.surrogate.distribution.dtype)
    if not base_is_joint and _is_affine(drawn.surrogate.bijector):
        return _affine_stopped_log_prob(drawn, samples)
    return _general_stopped_log_prob(drawn, samples)
