"""Randomized quasi-Monte Carlo base noise, pushed through a surrogate's own map.

The base noise `eps ~ N(0, I_d)` of a reparameterized surrogate is replaced by
a randomized Sobol' point set mapped by the normal quantile:

```none
u_n     = Sobol'(n),  n = 0..N-1                  (the first N points, 0 included)
k_n     = bits(u_n) XOR r,  r ~ U{0..2^32-1}^d    (one random digital shift)
v_n     = (k_n + (j_n + 1/2) / 2^32) / 2^32,  j_n ~ U{0..2^32-1}^d
eps_n   = Phi^{-1}(v_n)
z_n     = T_phi(eps_n)                            (the surrogate's reparameterization)
```

The random digital shift `r` (Matousek 1998) keeps the net structure of the
Sobol' points (for N a power of two, every elementary interval of volume 1/N
holds one point) while making each `k_n` uniform on the 32-bit integers; the
jitter `j_n` fills the bits below the 32nd, so each `v_n` is uniform on
`[0, 1)^d` to 64 bits and every `z_n` is marginally distributed as `q_phi`:
every Monte Carlo average stays unbiased. The points are dependent, which
is the point: for smooth integrands the variance falls like `N^{-2}` or faster
instead of `N^{-1}` (Owen 1997; Buchholz, Wenzel and Mandt 2018).

Cost: one call of the stateless generator draws `(N + 1) d` 32-bit words (the
shift and the jitter), about what iid normal noise of the same size costs;
the rest is elementwise (a XOR, a reflection into the lower half, one
`ndtri`). Before, two calls (an int64 shift and float64 jitter, twice the
random words) and a float64 `ndtri` made the noise about 2.8x an iid draw, and
a Brownian-motion fit step 2.2x (`benchmarks/qmc_cost.py`).

The unrandomized Sobol' points are a constant: computed once at trace time
(`tf.init_scope`) and embedded, so the same code runs eagerly, in
`tf.function` and under XLA (which has no Sobol' kernel), once per size and
process. The same seed gives the same points.

#### References

[1] Alexander Buchholz, Florian Wenzel and Stephan Mandt. Quasi-Monte Carlo
    variational inference. ICML 2018. arXiv:1807.01604.
[2] Art B. Owen. Monte Carlo variance of scrambled net quadrature. SIAM J.
    Numer. Anal. 34(5), 1997.
[3] Jiri Matousek. On the L2-discrepancy for anchored boxes. J. Complexity
    14(4), 1998 (random digital shifts).
"""

import dataclasses
import functools

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


@functools.lru_cache(maxsize=64)
def _sobol_bits(num_points, dimension):
    """The first `num_points` Sobol' points (zero included), 32 bits each.

    A `numpy` array `[num_points, dimension]` of `uint32`, computed eagerly
    once per size and process (`tf.init_scope`: also when first asked for
    inside a traced function) and embedded in every trace as a constant.
    """
    with tf.init_scope():
        rest = tf.math.sobol_sample(dimension, num_points - 1, dtype=tf.float64)
        points = np.concatenate([np.zeros([1, dimension]), rest.numpy()], axis=0)
    bits = np.floor(points * 2.0**_BITS).astype(np.uint32)
    bits.setflags(write=False)
    return bits


def _lower_half_uniform(point_bits, jitter_bits, dtype):
    """`(k + (j + 1/2) / 2^32) / 2^32` in `(0, 1/2)`, for `k < 2^31`.

    Exact in float64; in float32 the relative rounding is `2^-24`, and the
    jitter matters only where `k` is small, which float32 represents exactly.
    """
    fraction = (tf.cast(jitter_bits, dtype) + 0.5) * 2.0**-_BITS
    return (tf.cast(point_bits, dtype) + fraction) * 2.0**-_BITS


def randomized_sobol_normal(num_points, shape, seed, dtype=tf.float32):
    """`[num_points] + shape` standard normal draws from a randomized Sobol' set.

    One call of the stateless generator gives every random bit: `d` 32-bit
    words for the digital shift `r` and `N * d` for the jitter `j`. A point
    whose shifted bits `k = bits(u) XOR r` are `>= 2^31` (`v >= 1/2`) is
    reflected through `1 - v`, which in bits is `(NOT k, NOT j)`, so both tails
    are resolved to the same depth and float32 suffices:

    ```none
    v     = (k + (j + 1/2) / 2^32) / 2^32
    eps   = Phi^{-1}(v)          if k <  2^31
          = -Phi^{-1}(1 - v)     otherwise
    ```

    Args:
      num_points: Python int N, the number of points.
      shape: Python list of ints, the shape of one point (`d = prod(shape)`,
        at most `MAX_DIMENSION`).
      seed: stateless seed of the randomization.
      dtype: floating dtype of the result (computed in float64 for float64,
        else in float32).

    Returns:
      `Tensor` `[num_points] + shape`; each row is marginally `N(0, I)`.
    """
    dimension = int(np.prod(shape, dtype=np.int64))
    random_bits = tf.random.stateless_uniform(
        [num_points + 1, dimension], seed, minval=None, maxval=None, dtype=tf.uint32
    )
    shift, jitter = random_bits[0], random_bits[1:]
    shifted = tf.bitwise.bitwise_xor(
        tf.constant(_sobol_bits(num_points, dimension)), shift
    )
    upper = shifted >= tf.constant(2**31, tf.uint32)
    dtype = tf.as_dtype(dtype)
    compute_dtype = tf.float64 if dtype == tf.float64 else tf.float32
    lower_half = _lower_half_uniform(
        tf.where(upper, tf.bitwise.invert(shifted), shifted),
        tf.where(upper, tf.bitwise.invert(jitter), jitter),
        compute_dtype,
    )
    magnitude = tf.math.ndtri(lower_half)  # negative: v < 1/2
    normal = tf.where(upper, -magnitude, magnitude)
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
