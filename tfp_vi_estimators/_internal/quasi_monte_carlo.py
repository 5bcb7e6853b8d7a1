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

Cost: one call of the stateless Philox generator draws `(N + 1) d` 32-bit
words (the shift and the jitter), less than iid normal noise of the same size;
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

from tfp_vi_estimators._internal import noise_push
from tfp_vi_estimators._internal.surrogates import as_distribution

__all__ = [
    "MAX_DIMENSION",
    "QuasiMonteCarlo",
    "randomized_sobol_normal",
    "sample",
    "sample_each_component",
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


def randomized_sobol_normal(num_points, shape, seed, dtype=tf.float32, replicas=None):
    """`[num_points] + shape` standard normal draws from a randomized Sobol' set.

    One call of the stateless Philox generator gives every random bit: `d`
    32-bit words for the digital shift `r` and `N * d` for the jitter `j`
    (Philox by name: the same bits eagerly, under XLA and on every device; XLA
    on CPUs otherwise picks a generator about twice as slow for these). A point
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
      replicas: `None`, or a Python int R: R independently randomized copies
        of the point set, `[R, num_points] + shape`.

    Returns:
      `Tensor` `[num_points] + shape` (`[R, num_points] + shape`); each row is
      marginally `N(0, I)`.
    """
    dimension = int(np.prod(shape, dtype=np.int64))
    copies = [] if replicas is None else [replicas]
    random_bits = tf.random.stateless_uniform(
        [*copies, num_points + 1, dimension],
        seed,
        minval=None,
        maxval=None,
        dtype=tf.uint32,
        alg="philox",  # named: the same bits on every device, and fast under XLA
    )
    shift, jitter = random_bits[..., :1, :], random_bits[..., 1:, :]
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
    return tf.reshape(tf.cast(normal, dtype), [*copies, num_points, *shape])


def _noise_size(q, size_fn=noise_push.noise_size):
    """Coordinates per draw, or the reason `q` cannot take pushed noise."""
    try:
        size = size_fn(q)
    except noise_push.Unserved as reason:
        return None, str(reason)
    if size > MAX_DIMENSION:
        return None, f"its noise has {size} dimensions (at most {MAX_DIMENSION})"
    return size, None


def unsupported_reason(surrogate, each_component=False):
    """Why `surrogate` cannot be served, or `None` if it can.

    Args:
      surrogate: the surrogate posterior.
      each_component: the draws are one per mixture component
        (`Layout.ONE_PER_COMPONENT`): its components must take the noise.
    """
    q = as_distribution(surrogate)
    if each_component:
        return _noise_size(q.components_distribution, noise_push.part_noise_size)[1]
    return _noise_size(q)[1]


def sample(surrogate, num_points, seed):
    """`num_points` draws from `surrogate` with randomized Sobol' noise.

    Returns:
      `(samples, log_prob, with_pre_image)`: the samples `[num_points] + batch
      + event` (a structure for a joint surrogate), `log q` at them (live), and
      the `pre_image.PreImageSample` / `JointPreImage` when the surrogate has
      one (`pre_image.has_pre_image`, else `None`).
    """
    q = as_distribution(surrogate)
    size, _ = _noise_size(q)
    noise = randomized_sobol_normal(num_points, [size], seed, noise_push.noise_dtype(q))
    pushed = noise_push.push(q, noise)
    return pushed.samples, pushed.log_prob, pushed.pre_image


def sample_each_component(mixture, sample_size, seed):
    """`sample_size` draws from every component of a `MixtureSameFamily`.

    Each component's draws come from its own randomization of the same Sobol'
    point set (independent digital shifts), so each component's average is a
    randomized quasi-Monte Carlo estimate and the components stay independent,
    as with iid draws.

    Returns:
      `[sample_size] + batch + [C] + event`, as
      `mixture.components_distribution.sample([sample_size])`.
    """
    components = as_distribution(mixture).components_distribution
    batch = components.batch_shape.as_list()  # B + [C]
    shape = batch[:-1] + components.event_shape.as_list()
    noise = randomized_sobol_normal(
        sample_size, shape, seed, components.dtype, replicas=batch[-1]
    )  # [C, S] + B + E
    noise = tf.experimental.numpy.moveaxis(noise, 0, len(batch))  # [S] + B + [C] + E
    return noise_push.push_simple(components, noise)
