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
    """Stateless uniforms in the open interval (0, 1) (logs of them are finite)."""
    tiny = np.finfo(dtype.as_numpy_dtype).tiny
    return tf.random.stateless_uniform(
        shape, seed, minval=tiny, maxval=1.0, dtype=dtype
    )


def dirichlet_copula_uniforms(num_groups, group_size, trailing_shape, dtype, seed):
    """`[num_groups, group_size] + trailing_shape` uniforms, antithetic in a group.

    Every entry is Uniform(0, 1); the `group_size` entries that differ only in
    the second index share one Dirichlet copula (independent across groups and
    trailing positions). `group_size = 1` gives independent uniforms.
    """
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
    """Categories by ascending probability and their stick-breaking levels.

    Args:
      logits: `[..., C]` unnormalized log-probabilities.

    Returns:
      order: `[..., C]` int32, the categories sorted by ascending probability
        (stable, so equal logits keep their index order).
      log_p: `[..., C - 1]`, `log p_i` of levels `i = 0..C-2`.
      log_not_p: `[..., C - 1]`, `log (1 - p_i)`.
    """
    log_probs = tf.math.log_softmax(logits, axis=-1)
    order = tf.argsort(log_probs, axis=-1, stable=True)
    sorted_log_probs = tf.gather(log_probs, order, batch_dims=order.shape.rank - 1)
    # log sum_{j >= i} q_(j)
    log_tails = tf.math.cumulative_logsumexp(sorted_log_probs, axis=-1, reverse=True)
    log_p = sorted_log_probs[..., :-1] - log_tails[..., :-1]
    log_not_p = log_tails[..., 1:] - log_tails[..., :-1]
    return order, log_p, log_not_p


def coupled_categorical(uniforms, logits):
    """One-hot values (in `logits`' dtype) by sorted stick breaking.

    Args:
      uniforms: `[..., C - 1]`, one uniform per stick-breaking level.
      logits: `[..., C]`, broadcastable to the values' shape.
    """
    logits = tf.broadcast_to(
        logits, tf.concat([tf.shape(uniforms)[:-1], tf.shape(logits)[-1:]], 0)
    )
    order, log_p, _ = sorted_stick_breaking(logits)
    says_no = tf.cast(tf.math.log(uniforms) >= log_p, tf.int32)
    # The chosen level is the number of leading refusals (C - 1 if all refuse).
    level = tf.reduce_sum(tf.math.cumprod(says_no, axis=-1), axis=-1)
    category = tf.gather(order, level[..., tf.newaxis], batch_dims=order.shape.rank - 1)
    return tf.one_hot(category[..., 0], tf.shape(logits)[-1], dtype=logits.dtype)
