"""Local DisARM: antithetic pairs for the multi-sample (importance-weighted) bound.

The `K` particles of a draw give the multi-sample bound `L = log 1/K sum_k
exp(lw_k)`. Draws come in antithetic pairs `(i, j)` (the sampler's coupling:
unit by unit, particle `k` of draw `j` uses the uniform `1 - u` where particle
`k` of draw `i` used `u`). For particle `k` of draw `i`, hold the other
particles of draw `i` fixed and apply DisARM to `g(b) = f(L(b, b_{i,-k}))`
with the pair `(b_{i,k}, b_{j,k})`:

```none
L_i        = log mean_m exp(lw_{i,m})
L_i^(k)    = L_i with lw_{i,k} replaced by lw_{j,k}     (partner's particle k)
grad_a     = sum_k 1/2 (f(L_i) - f(L_i^(k))) (b_{i,k} - b_{j,k}) sigmoid(|a_{i,k}|)
```

per Bernoulli unit with logits `a`. Each term is DisARM for the gradient of
`E[f(L)]` through particle `k` alone (the pair is independent of the other
particles of draw `i`), so the sum over `k` is unbiased for the whole
gradient; the estimator averages it over both draws of the pair (either draw
may play `i`). Unlike DisARM on the whole bound, whose learning signal
`f(L_i) - f(L_j)` changes every particle at once, the signal of particle
`k` is what swapping that particle alone does to the bound: the "local"
learning signal of Dong, Mnih & Tucker [1] (section 5), who compare it with
VIMCO [2]. Its cost is that of `sample_size` times `importance_sample_size`
target evaluations, as VIMCO's, plus `O(K^2)` work per draw on the log-weights.

The direct dependence of `f(L)` on the parameters (through `log q` and a
target's parameters) is kept as in every estimator here; unbiased for every
discrepancy. `sample_size` must be even (the draws form `sample_size / 2`
pairs), `importance_sample_size >= 2`.

#### References

[1] Zhe Dong, Andriy Mnih and George Tucker. DisARM: An antithetic gradient
    estimator for binary latent variables. NeurIPS 2020. arXiv:2006.10680.
[2] Andriy Mnih and Danilo Rezende. Variational inference for Monte Carlo
    objectives. ICML 2016. arXiv:1602.06725.
"""

import dataclasses

import tensorflow as tf

from tfp_vi_estimators.estimators import discrete
from tfp_vi_estimators.estimators.arms import antithetic_plan
from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp
from tfp_vi_estimators.estimators.plan import DiscreteFamily

__all__ = ["LocalDisARM", "swapped_log_means"]


def _partners(tensor):
    """`[S, ...]` with draws `2g` and `2g + 1` exchanged."""
    shape = tf.shape(tensor)
    pairs = tf.reshape(tensor, tf.concat([[-1, 2], shape[1:]], 0))
    return tf.reshape(tf.reverse(pairs, axis=[1]), shape)


def swapped_log_means(log_weights):
    """`L_i^(k)`: draw `i`'s bound with particle `k` taken from its partner.

    Args:
      log_weights: `[S, K] + batch`, draws `2g` and `2g + 1` paired.

    Returns:
      `[S, K] + batch`: entry `[i, k]` is `log mean_m exp(lw_{i,m})` with
      `lw_{i,k}` replaced by `lw_{partner(i),k}`.
    """
    num_particles = tf.shape(log_weights)[1]
    batch_rank = log_weights.shape.rank - 2
    eye = tf.reshape(
        tf.eye(num_particles, dtype=tf.bool),
        tf.concat(
            [[1], [num_particles, num_particles], tf.ones([batch_rank], tf.int32)], 0
        ),
    )
    own = tf.expand_dims(log_weights, 1)  # [S, 1(k), K(m)] + batch
    partner = tf.expand_dims(_partners(log_weights), 2)  # [S, K(k), 1] + batch
    swapped = tf.where(eye, partner, own)  # [S, K(k), K(m)] + batch
    log_k = tf.math.log(tf.cast(num_particles, log_weights.dtype))
    return tf.reduce_logsumexp(swapped, axis=2) - log_k


class LocalDisARM(GradientEstimator):
    """DisARM with a per-particle learning signal, for the multi-sample bound.

    Serves `tfd.Bernoulli` surrogates (batched, in `tfd.Independent`, or
    parts of a `JointDistribution` whose other parts are reparameterized and
    which do not depend on other parts' values). `sample_size` must be even,
    `importance_sample_size` at least 2.
    """

    plan = dataclasses.replace(
        antithetic_plan({DiscreteFamily.BERNOULLI}, 2), min_importance_sample_size=2
    )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        log_weights = log_densities.target - log_densities.surrogate
        f = discrepancy_fn(log_mean_exp(log_weights))
        batch_rank = f.shape.rank - 1
        swapped = discrepancy_fn(swapped_log_means(tf.stop_gradient(log_weights)))
        # [S, K] + batch: 1/2 (f(L_i) - f(L_i^(k))), the signal of particle k.
        signal = 0.5 * (tf.expand_dims(tf.stop_gradient(f), 1) - swapped)
        term = tf.zeros_like(f)
        for part in log_densities.discrete:
            weight = tf.sigmoid(tf.abs(part.logits))
            flip = part.values - _partners(part.values)
            coefficient = discrete.spread(signal, flip, batch_rank) * flip * weight
            term += discrete.per_draw_sum(
                tf.stop_gradient(coefficient) * part.logits, batch_rank
            )
        return f + (term - tf.stop_gradient(term))
