"""Pushing given standard normal noise through a surrogate's own reparameterization.

`quasi_monte_carlo.py` draws the noise (a randomized Sobol' point set, one
row of `d` coordinates per draw); this module says how many coordinates a
surrogate takes (`noise_size`) and maps each row to a draw of the surrogate
(`push`), so that a row of independent `N(0, 1)` coordinates gives a draw
distributed exactly as the surrogate:

```none
Normal(loc, scale)                     eps * scale + loc
Independent(q) / Sample(Normal)        as q / as the Normal
TransformedDistribution(q, T)          T(push(q, eps))       (also a joint base)
JointDistribution(q_1, ..., q_P)       part p takes its own d_p coordinates and is
                                       pushed through q_p(. | its parents' values),
                                       built by the model as TFP builds it
MixtureSameFamily(pi, q_c), reparameterize=True
                                       c = F_pi^{-1}(Phi(eps_0)),  z = push(q_c, eps_1:)
```

For the mixture, `eps_0` (one coordinate per batch member) picks the
component by inverting the cumulative weights, and the other coordinates are
pushed through the chosen component. Each draw is distributed as the mixture
(`c ~ pi` and `eps_1: ~ N(0, I)` independently); over a Sobol' net the first
coordinate is stratified, so each component receives `N pi_c` draws up to
rounding instead of a binomial count. TFP's mixture draws every component and
keeps the chosen one; so does `push` (the log-density needs every component
anyway). The gradient is TFP's implicit reparameterization of the mixture
(Figurnov et al. 2018: the distributional transform, which gives the weights
their gradient), applied to the value drawn here (`_reparameterize_sample`,
private in TFP, used here only).

#### References

[1] Mikhail Figurnov, Shakir Mohamed and Andriy Mnih. Implicit
    reparameterization gradients. NeurIPS 2018. arXiv:1805.08498.
"""

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import joint_parts, pre_image

tfd = tfp.distributions

__all__ = [
    "Pushed",
    "Unserved",
    "noise_dtype",
    "noise_size",
    "part_noise_size",
    "push",
    "push_simple",
]

_SERVED = (
    "served: Normal, Independent, Sample of a scalar Normal, "
    "MultivariateNormalTriL / Diag / LinearOperator, TransformedDistribution of "
    "those (a joint base included) with an injective bijector, JointDistribution "
    "of those, and MixtureSameFamily(reparameterize=True) of scalar or "
    "Independent components of those; all with static shapes"
)


class Unserved(ValueError):
    """Why a surrogate's reparameterization cannot take pushed noise."""


@dataclasses.dataclass(frozen=True)
class Pushed:
    """Draws made from given noise.

    Attributes:
      samples: `[N] + batch + event` (a structure for a joint surrogate).
      log_prob: `log q` at the samples, live, `[N] + batch`.
      pre_image: a `pre_image.PreImageSample` / `JointPreImage` where the
        surrogate has one (`pre_image.has_pre_image`), else `None`.
    """

    samples: Any
    log_prob: Any
    pre_image: Any = None


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def _static(q):
    shape = q.batch_shape.concatenate(q.event_shape)
    if not shape.is_fully_defined():
        raise Unserved(f"{q.name!r} has a shape that is not static ({shape})")
    return shape


def _simple_size(q):
    """Coordinates of a non-joint, non-mixture surrogate (batch + event)."""
    if isinstance(q, tfd.Normal):
        return _size(_static(q))
    if isinstance(q, tfd.Independent):
        return _simple_size(q.distribution)
    if isinstance(q, tfd.Sample) and isinstance(q.distribution, tfd.Normal):
        if q.distribution.batch_shape.rank == 0:
            return _size(_static(q))
    if isinstance(q, tfd.TransformedDistribution) and _pushable(q):
        return _noise_size(q.distribution)
    raise Unserved(
        f"its reparameterization ({type(q).__name__} {q.name!r}) is not one "
        f"quasi-Monte Carlo sampling can push noise through ({_SERVED})"
    )


def _pushable(q):
    """A transformed distribution drawn as `T(base draw)`: generic sampling,
    an injective bijector, and no batch broadcasting of a plain base."""
    if not (
        pre_image.samples_generically(q) and getattr(q.bijector, "_is_injective", False)
    ):
        return False
    if tf.nest.is_nested(q.distribution.dtype):
        return True  # TFP does not broadcast a joint base either
    return q.batch_shape == q.distribution.batch_shape


def _innermost(q):
    """The base under every `TransformedDistribution` layer of `q`."""
    while isinstance(q, tfd.TransformedDistribution):
        q = q.distribution
    return q


def part_noise_size(part):
    """`noise_size` of a joint surrogate's part or a mixture's components: not
    joint, not a mixture, and the noise shaped like the part."""
    inner = _innermost(part)
    if joint_parts.is_joint(inner) or isinstance(inner, tfd.MixtureSameFamily):
        raise Unserved(
            f"{part.name!r} is (or transforms) a {type(inner).__name__}; a joint "
            "surrogate's part or a mixture's components must be one of the "
            "distributions served alone"
        )
    size = _simple_size(part)
    if _static(inner) != _static(part):
        raise Unserved(
            f"{part.name!r} has a bijector that changes the shape of its base; "
            "a joint surrogate's part (a mixture's components) must take noise "
            "shaped like itself"
        )
    return size


def _is_scalar_factorized(components):
    if isinstance(components, tfd.Independent):
        components = components.distribution
    return components.event_shape.rank == 0


def _mixture_size(q):
    if q.reparameterization_type != tfd.FULLY_REPARAMETERIZED:
        raise Unserved(
            "a MixtureSameFamily built with reparameterize=False has no "
            "pathwise gradient for its weights (build it with "
            "reparameterize=True, or use estimators.MixtureStickingTheLanding)"
        )
    components = q.components_distribution
    if not _is_scalar_factorized(components):
        raise Unserved(
            "TFP's implicit reparameterization of a mixture needs scalar or "
            "Independent components; use estimators.MixtureStickingTheLanding"
        )
    part_noise_size(components)  # raises if the components cannot take noise
    batch = _static(q)[: q.batch_shape.rank]
    return _size(batch) + _size(batch) * _size(q.event_shape)


def _noise_size(q):
    if joint_parts.is_joint(q):
        return sum(part_noise_size(p) for p in joint_parts.single_sample_parts(q))
    if isinstance(q, tfd.MixtureSameFamily):
        return _mixture_size(q)
    return _simple_size(q)


def noise_size(q):
    """Standard normal coordinates one draw of `q` takes.

    Raises:
      Unserved: saying why `q` cannot take pushed noise.
    """
    return _noise_size(q)


def noise_dtype(q):
    """float64 if any part of `q` is float64, else float32."""
    dtypes = tf.nest.flatten(q.dtype)
    return tf.float64 if tf.float64 in dtypes else tf.float32


def push_simple(q, noise):
    """`T(noise)` in the surrogate's own order of ops (Normal: `eps * scale + loc`);
    `noise` is `[N] + batch + event` (leading dimensions broadcast)."""
    if isinstance(q, tfd.Normal):
        return noise * q.scale + q.loc
    if isinstance(q, (tfd.Independent, tfd.Sample)):
        return push_simple(q.distribution, noise)
    return q.bijector.forward(push_simple(q.distribution, noise))


def _rows(noise, shape, dtype):
    """`[N, d]` noise as `[N] + shape` of `dtype`."""
    return tf.cast(tf.reshape(noise, [-1, *shape]), dtype)


def _push(q, noise):
    """`Pushed` draws of `q` from noise shaped for it: `[N] + batch + event` of
    its innermost base, or `[N, d]` when that base is a joint distribution."""
    if joint_parts.is_joint(q):
        return _push_joint(q, noise)
    if isinstance(q, tfd.TransformedDistribution):
        base = _push(q.distribution, noise)
        drawn = pre_image.push_forward_with_pre_image(q, base.samples, base.log_prob)
        kept = drawn if pre_image.has_pre_image(q) else None
        return Pushed(drawn.samples, drawn.log_prob, kept)
    samples = push_simple(q, noise)
    return Pushed(samples, q.log_prob(samples))


def _push_joint(q, noise):
    """Each part pushed from its own coordinates, given its parents' values
    (the model builds each part's distribution as TFP's sampling does)."""
    parts = joint_parts.single_sample_parts(q)
    sizes = [part_noise_size(p) for p in parts]
    split = [
        _rows(chunk, _static(p), p.dtype)
        for chunk, p in zip(tf.split(noise, sizes, axis=-1), parts, strict=True)
    ]
    vectorized = joint_parts.is_vectorized(q)
    keep = not vectorized and pre_image.has_pre_image(q)

    def step(part):
        pushed = _push(part.distribution, part.value)
        traced = (pushed.samples, pushed.log_prob)
        if keep:  # outside tf.vectorized_map: distributions may be traced
            kept = pushed.pre_image or part.distribution
            traced = (*traced, kept, part.is_root)
        return pushed.samples, traced

    # Roots get the sample shape (so `is_root` is known); under
    # `tf.vectorized_map` the noise's leading dimension is mapped over.
    sample_shape = () if vectorized else [noise.shape[0]]
    traced = joint_parts.run_model(
        q, step, sample_shape, seed=tf.zeros([2], tf.int32), value=split
    )
    if keep:
        drawn = pre_image.joint_pre_image(q, traced)
        return Pushed(drawn.samples, drawn.log_prob, drawn)
    samples, log_probs = zip(*traced, strict=True)
    return Pushed(
        joint_parts.unflatten(q, list(samples)),
        joint_parts.total_log_prob(q, list(log_probs)),
    )


def _push_mixture(q, noise):
    """Stratified component choice, noise pushed through the chosen component,
    and TFP's implicit reparameterization gradient."""
    batch = q.batch_shape.as_list()
    event = q.event_shape.as_list()
    choice_noise, component_noise = tf.split(
        noise, [_size(batch), _size(batch + event)], axis=-1
    )
    # Phi(eps_0): the uniform coordinate back from its normal quantile.
    uniform = 0.5 * tf.math.erfc(-_rows(choice_noise, batch, q.dtype) / np.sqrt(2.0))
    probs = tf.broadcast_to(
        tf.math.softmax(q.mixture_distribution.logits_parameter(), axis=-1),
        [*batch, q.components_distribution.batch_shape[-1]],
    )
    thresholds = tf.math.cumsum(probs, axis=-1)[..., :-1]  # B + [C - 1]
    choice = tf.reduce_sum(
        tf.cast(uniform[..., tf.newaxis] >= thresholds, tf.int32), axis=-1
    )
    eps = _rows(component_noise, batch + event, q.dtype)
    eps = tf.expand_dims(eps, axis=1 + len(batch))  # [N] + B + [1] + E
    every = push_simple(q.components_distribution, eps)  # [N] + B + [C] + E
    mask = tf.one_hot(choice, tf.shape(probs)[-1], dtype=q.dtype)
    mask = tf.reshape(mask, [*mask.shape, *([1] * len(event))])
    value = tf.reduce_sum(tf.math.multiply_no_nan(every, mask), axis=1 + len(batch))
    samples = q._reparameterize_sample(  # noqa: SLF001 - TFP's own gradient
        value, event_shape=q.components_distribution.event_shape_tensor()
    )
    return Pushed(samples, q.log_prob(samples))


def push(q, noise):
    """Draws of `q` from `[N, noise_size(q)]` standard normal noise.

    Returns:
      `Pushed`: samples `[N] + batch + event` distributed as `q` when the
      noise rows are `N(0, I)`, their live `log q`, and the pre-image kept.
    """
    if isinstance(q, tfd.MixtureSameFamily):
        return _push_mixture(q, noise)
    inner = _innermost(q)
    if not joint_parts.is_joint(inner):
        noise = _rows(noise, _static(inner), noise.dtype)
    return _push(q, noise)
