"""Randomized quasi-Monte Carlo base noise, pushed through a surrogate's own map.

The base noise `eps ~ N(0, I_d)` of a reparameterized surrogate is replaced by
a randomized Sobol' point set mapped by the normal quantile:

```none
u_n     = Sobol'(n),  n = 0..N-1                  (the first N points, 0 included)
v_n     = (bits(u_n) XOR r + j_n) / 2^32,  r ~ U{0..2^32-1}^d,  j_n ~ U[0, 1)^d
eps_n   = Phi^{-1}(v_n)
z_n     = T_phi(eps_n)                            (the surrogate's reparameterization)
```

The random digital shift `r` (Matousek 1998) keeps the net structure of the
Sobol' points (for N a power of two, every elementary interval of volume 1/N
holds one point) while making each `v_n` uniform on `[0, 1)^d` (the jitter
`j_n` fills the last bit), so every `z_n` is marginally distributed as `q_phi`
and every Monte Carlo average stays unbiased. The points are dependent, which
is the point: for smooth integrands the variance falls like `N^{-2}` or faster
instead of `N^{-1}` (Owen 1997; Buchholz, Wenzel and Mandt 2018).

The unrandomized Sobol' points are a constant: computed once at trace time
(`tf.init_scope`) and embedded, so the same code runs eagerly, in
`tf.function` and under XLA (which has no Sobol' kernel). The same seed gives
the same points.

#### References

[1] Alexander Buchholz, Florian Wenzel and Stephan Mandt. Quasi-Monte Carlo
    variational inference. ICML 2018. arXiv:1807.01604.
[2] Art B. Owen. Monte Carlo variance of scrambled net quadrature. SIAM J.
    Numer. Anal. 34(5), 1997.
[3] Jiri Matousek. On the L2-discrepancy for anchored boxes. J. Complexity
    14(4), 1998 (random digital shifts).
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import pre_image
from tfp_vi_estimators._internal.surrogates import as_distribution

tfd = tfp.distributions

__all__ = [
    "MAX_DIMENSION",
    "QuasiMonteCarlo",
    "noise_shape",
    "randomized_sobol_normal",
    "sample",
    "unsupported_reason",
]

MAX_DIMENSION = 21201  # tf.math.sobol_sample's direction numbers
_BITS = 32


@dataclasses.dataclass(frozen=True)
class QuasiMonteCarlo:
    """Draw the base noise from a randomly digitally shifted Sobol' sequence.

    Pass as `monte_carlo_variational_loss(..., sampling=QuasiMonteCarlo())`
    (or `sampling='rqmc'`). Best with `sample_size * importance_sample_size` a
    power of two (the points then form a net).
    """

    def __repr__(self):
        return "QuasiMonteCarlo()"


def _sobol_integers(num_points, dimension):
    """The first `num_points` Sobol' points (zero included) as 32-bit integers."""
    with tf.init_scope():  # a constant, computed once at trace time
        rest = tf.math.sobol_sample(dimension, num_points - 1, dtype=tf.float64)
        points = np.concatenate([np.zeros([1, dimension]), rest.numpy()], axis=0)
    return tf.constant(np.floor(points * 2.0**_BITS).astype(np.int64))


def randomized_sobol_normal(num_points, shape, seed, dtype=tf.float32):
    """`[num_points] + shape` standard normal draws from a randomized Sobol' set.

    Args:
      num_points: Python int N, the number of points.
      shape: Python list of ints, the shape of one point (`d = prod(shape)`,
        at most `MAX_DIMENSION`).
      seed: stateless seed of the randomization.
      dtype: floating dtype of the result.

    Returns:
      `Tensor` `[num_points] + shape`; each row is marginally `N(0, I)`.
    """
    dimension = int(np.prod(shape, dtype=np.int64))
    shift_seed, jitter_seed = tfp.random.split_seed(seed, 2)
    shift = tf.random.stateless_uniform(
        [dimension], shift_seed, minval=0, maxval=2**_BITS, dtype=tf.int64
    )
    shifted = tf.bitwise.bitwise_xor(_sobol_integers(num_points, dimension), shift)
    jitter = tf.random.stateless_uniform(
        [num_points, dimension], jitter_seed, dtype=tf.float64
    )
    uniform = (tf.cast(shifted, tf.float64) + jitter) * 2.0**-_BITS
    tiny = np.finfo(np.float64).tiny
    normal = tf.math.ndtri(tf.clip_by_value(uniform, tiny, 1.0 - 2.0**-53))
    return tf.reshape(tf.cast(normal, dtype), [num_points, *shape])


def noise_shape(surrogate):
    """The shape of one draw's standard normal noise, or `None` if not served.

    Served: `Normal`, `Independent` of a served distribution, `Sample` of a
    `Normal` with scalar batch, and a `TransformedDistribution` of a served
    base whose pre-image the sampler keeps (`pre_image.has_pre_image`), so
    `MultivariateNormalTriL`, `MultivariateNormalDiag` and flows included.
    """
    q = as_distribution(surrogate)
    if tf.nest.is_nested(q.dtype):
        return None  # a JointDistribution
    shape = q.batch_shape.concatenate(q.event_shape)
    if not shape.is_fully_defined():
        return None
    if isinstance(q, tfd.Normal):
        return shape.as_list()
    if isinstance(q, tfd.Independent):
        return noise_shape(q.distribution)
    if isinstance(q, tfd.Sample):
        inner = q.distribution
        if isinstance(inner, tfd.Normal) and inner.batch_shape.rank == 0:
            return shape.as_list()
        return None
    if pre_image.has_pre_image(q):
        return noise_shape(q.distribution)
    return None


def unsupported_reason(surrogate):
    """Why `surrogate` cannot be served, or `None` if it can."""
    shape = noise_shape(surrogate)
    if shape is None:
        return (
            "its reparameterization is not one quasi-Monte Carlo sampling can "
            "push noise through (served: Normal, Independent, Sample of a "
            "scalar Normal, MultivariateNormalTriL / Diag / LinearOperator and "
            "TransformedDistribution of those with a static shape)"
        )
    if int(np.prod(shape, dtype=np.int64)) > MAX_DIMENSION:
        return (
            f"its noise has {int(np.prod(shape))} dimensions (at most {MAX_DIMENSION})"
        )
    return None


def _push(q, noise):
    """`T(noise)` in the surrogate's own order of ops (Normal: `eps * scale + loc`)."""
    if isinstance(q, tfd.Normal):
        return noise * q.scale + q.loc
    if isinstance(q, (tfd.Independent, tfd.Sample)):
        return _push(q.distribution, noise)
    return q.bijector.forward(_push(q.distribution, noise))


def sample(surrogate, num_points, seed):
    """`num_points` draws from `surrogate` with randomized Sobol' noise.

    Returns:
      `(samples, log_prob, with_pre_image)`: the samples `[num_points] + batch
      + event`, `log q` at them (live), and a `pre_image.PreImageSample` when
      the surrogate is bijector-transformed (else `None`).
    """
    q = as_distribution(surrogate)
    noise = randomized_sobol_normal(num_points, noise_shape(q), seed, q.dtype)
    if pre_image.has_pre_image(q):
        x = _push(q.distribution, noise)
        drawn = pre_image.push_forward_with_pre_image(q, x, q.distribution.log_prob(x))
        return drawn.samples, drawn.log_prob, drawn
    samples = _push(q, noise)
    return samples, q.log_prob(samples), None
