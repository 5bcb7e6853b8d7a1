"""Antithetic couplings of discrete draws: the Dirichlet copula, stick breaking.

Draws in a group of `n` share one copula: each is marginally exact, and
together they are mutually antithetic, so their rare outcomes seldom
coincide (Dimitriev & Zhou 2021, [1]):

```none
d ~ Dirichlet(1, ..., 1)        (n entries)
u_i = (1 - d_i)^(n - 1)         u_i ~ Uniform(0, 1);  n = 2: u_2 = 1 - u_1
C(s, t) = P(u_i <= s, u_j <= t) = max(0, s^(1/(n-1)) + t^(1/(n-1)) - 1)^(n-1)
```

A Bernoulli value takes its *rare* outcome (1 if `p < 1/2`, else 0) when
`u < r = min(p, 1 - p) = sigmoid(-|logits|)`: the copula's lower tail keeps
two rare outcomes apart, and with `n = 2` this is DisARM's pair (Dong, Mnih &
Tucker 2020, [2]). Two draws of a group are correlated with

```none
rho = (C(r, r) - r^2) / (r (1 - r)),     1 / (1 - rho) = r (1 - r) / (r - C(r, r))
```

(`antithetic_correction`), which the estimators divide out.

A categorical value is drawn by stick breaking over its categories sorted by
ascending probability (`sorted_stick_breaking`; Dong, Mnih & Tucker 2021, [3]):
level `i` takes category `(i)` with probability
`p_i = q_(i) / sum_{j >= i} q_(j) <= 1/2`, one copula uniform per level, and
the value is the first level that says yes (the last category if none does).

#### References

[1] Alek Dimitriev and Mingyuan Zhou. ARMS: Antithetic-REINFORCE-Multi-Sample
    gradient for binary variables. ICML 2021. arXiv:2105.14141.
[2] Zhe Dong, Andriy Mnih and George Tucker. DisARM: An antithetic gradient
    estimator for binary latent variables. NeurIPS 2020. arXiv:2006.10680.
[3] Zhe Dong, Andriy Mnih and George Tucker. Coupled gradient estimators for
    discrete latent variables. NeurIPS 2021. arXiv:2106.08056.
"""

import numpy as np
import tensorflow as tf

__all__ = [
    "antithetic_bernoulli",
    "antithetic_correction",
    "coupled_categorical",
    "dirichlet_copula_uniforms",
    "open_uniform",
    "sorted_stick_breaking",
]


def open_uniform(shape, dtype, seed):
    """Stateless uniforms in the open interval (0, 1) (logs of them are finite).

    Philox, named: the same numbers on every device, and under XLA on CPUs
    some twenty times faster than the automatic choice. The generator's zero
    (probability 2^-23 in float32) is raised to half an epsilon, not to the
    smallest normal number: `tiny * sigmoid(-a)` is subnormal, which CPUs
    flush to zero, and RELAX's conditional relaxation was then -inf (seen once
    in 2,000 steps of a Bernoulli VAE). Every other draw is unchanged.
    """
    tiny = np.finfo(dtype.as_numpy_dtype).tiny
    uniforms = tf.random.stateless_uniform(
        shape, seed, minval=tiny, maxval=1.0, dtype=dtype, alg="philox"
    )
    return tf.maximum(uniforms, np.finfo(dtype.as_numpy_dtype).eps / 2)


def dirichlet_copula_uniforms(num_groups, group_size, trailing_shape, dtype, seed):
    """`[num_groups, group_size] + trailing_shape` uniforms, antithetic in a group.

    Every entry is Uniform(0, 1); the `group_size` entries that differ only in
    the second index share one Dirichlet copula (independent across groups and
    trailing positions). `group_size = 1` gives independent uniforms.
    """
    if group_size == 2:  # d_1 is uniform: the pair is (u, 1 - u)
        first = open_uniform(
            tf.concat([[num_groups, 1], trailing_shape], axis=0), dtype, seed
        )
        return tf.concat([first, 1.0 - first], axis=1)
    shape = tf.concat([[num_groups], trailing_shape, [group_size]], axis=0)
    uniforms = open_uniform(shape, dtype, seed)
    if group_size > 1:
        exponentials = -tf.math.log(uniforms)
        shares = exponentials / tf.reduce_sum(exponentials, axis=-1, keepdims=True)
        uniforms = tf.exp((group_size - 1.0) * tf.math.log1p(-shares))
    return tf.experimental.numpy.moveaxis(uniforms, -1, 1)


def antithetic_correction(logits, group_size):
    """`1 / (1 - rho)`: the copula's correlation of two draws' Bernoulli values.

    With `r = sigmoid(-|logits|)`, `r (1 - r) / (r - C(r, r))`; `sigmoid(|logits|)`
    for pairs (`C(r, r) = 0` when `r <= 1/2`).
    """
    log_rare = -tf.math.softplus(tf.abs(logits))  # log r
    rare = tf.exp(log_rare)
    if group_size == 2:
        return 1.0 - rare
    root = tf.exp(log_rare / (group_size - 1.0))  # r^(1/(n-1))
    both_rare = tf.nn.relu(2.0 * root - 1.0) ** (group_size - 1.0)  # C(r, r)
    return rare * (1.0 - rare) / (rare - both_rare)


def antithetic_bernoulli(uniforms, logits):
    """0/1 values (in `logits`' dtype): the rare outcome exactly when `u < r`."""
    rare = tf.math.log(uniforms) < -tf.math.softplus(tf.abs(logits))
    return tf.cast(tf.equal(rare, logits < 0.0), logits.dtype)


def sorted_stick_breaking(logits):
    """Each category's rank by ascending probability, and the sorted probabilities.

    Ranks come from `C x C` comparisons and the sorted values from one-hot
    selections (no sort op, and no transcendental function beyond the
    softmax: faster under XLA for the few categories of a latent variable).

    Args:
      logits: `[..., C]` unnormalized log-probabilities.

    Returns:
      ranks: `[..., C]` int32, each category's position in ascending order of
        probability (stable: equal logits keep their index order).
      sorted_probs: `[..., C]`, `q_(i)`, ascending.
      tails: `[..., C]`, `S_i = sum_{j >= i} q_(j)` (at least `1 / C`); level
        `i < C - 1` takes its category with probability `p_i = q_(i) / S_i`.
    """
    probs = tf.math.softmax(logits, axis=-1)
    index = tf.range(tf.shape(probs)[-1])
    other, this = logits[..., tf.newaxis, :], logits[..., :, tf.newaxis]
    before = (other < this) | ((other == this) & (index < index[:, tf.newaxis]))
    ranks = tf.reduce_sum(tf.cast(before, tf.int32), axis=-1)
    # [..., level, category]: the category of each rank, selected.
    at_rank = tf.cast(
        tf.equal(ranks[..., tf.newaxis, :], index[:, tf.newaxis]), probs.dtype
    )
    sorted_probs = tf.reduce_sum(at_rank * probs[..., tf.newaxis, :], axis=-1)
    tails = tf.math.cumsum(sorted_probs, axis=-1, reverse=True)
    return ranks, sorted_probs, tails


def coupled_categorical(uniforms, logits):
    """One-hot values (in `logits`' dtype) by sorted stick breaking.

    Args:
      uniforms: `[..., C - 1]`, one uniform per stick-breaking level.
      logits: `[..., C]`, broadcastable to the values' shape (the ranks and
        levels are computed once per distinct logits, then broadcast).
    """
    ranks, sorted_probs, tails = sorted_stick_breaking(logits)
    says_no = tf.cast(uniforms * tails[..., :-1] >= sorted_probs[..., :-1], tf.int32)
    # The chosen level is the number of leading refusals (C - 1 if all refuse).
    level = tf.reduce_sum(tf.math.cumprod(says_no, axis=-1), axis=-1)
    return tf.cast(tf.equal(ranks, level[..., tf.newaxis]), logits.dtype)
