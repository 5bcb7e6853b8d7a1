"""DisARM for categorical latents: an importance-weighted antithetic pair.

Dong, Mnih & Tucker [1] derive DisARM anew: two *independent* draws give the
unbiased leave-one-out estimate, and importance sampling moves it onto a
coupled pair `(z, z')` with the same marginals,

```none
grad_a = E_{q(z) q(z')}[1/2 (f(z) - f(z')) (s(z) - s(z'))]
       = E_{p(z, z')}[1/2 w(z, z') (f(z) - f(z')) (s(z) - s(z'))],
w(z, z') = q(z) q(z') / p(z, z'),         s(z) = d log q(z) / d a,
```

per unit (one categorical variable with logits `a`), which holds when
`p(z, z') > 0` wherever `z != z'`. The coupling is stick breaking over the
categories sorted by ascending probability, with antithetic uniforms `u`,
`1 - u` at every level (`_internal/discrete_couplings.py`): level `i` takes
its category with probability `p_i = q_(i) / sum_{j >= i} q_(j) <= 1/2`, so
both draws can pass a level (probability `1 - 2 p_i`) and every pair of
different categories has positive probability. With `m` the lower level of
the two chosen categories,

```none
w(z, z') = prod_{i < m} (1 - p_i)^2 / (1 - 2 p_i) * (1 - p_m),     z != z'
```

(the factors of the longer path beyond `m` cancel). This is what the paper
calls the importance-weighted estimator with the stick-breaking coupling and
ascending order, the one of its categorical estimators that is unbiased for
every logits without further conditions; for two categories it is DisARM
(`w = sigmoid(|a|)`), and Bernoulli parts are served as DisARM.

It is a two-draw estimator: `sample_size` must be even (the draws form
`sample_size / 2` independent pairs; two target evaluations per pair, as
`ScoreFunction('leave_one_out')` with `sample_size=2`). It serves
`tfd.Categorical`, `tfd.OneHotCategorical` and `tfd.Bernoulli` parts, with
`importance_sample_size` K (each particle's units coupled across the pair),
for every discrepancy; reparameterized parts of a joint surrogate keep their
pathwise gradient.

#### References

[1] Zhe Dong, Andriy Mnih and George Tucker. Coupled gradient estimators for
    discrete latent variables. NeurIPS 2021. arXiv:2106.08056.
[2] Zhe Dong, Andriy Mnih and George Tucker. DisARM: An antithetic gradient
    estimator for binary latent variables. NeurIPS 2020. arXiv:2006.10680.
"""

import tensorflow as tf

from tfp_vi_estimators._internal.discrete_couplings import (
    antithetic_correction,
    sorted_stick_breaking,
)
from tfp_vi_estimators.estimators.arms import antithetic_plan, antithetic_score_term
from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp
from tfp_vi_estimators.estimators.plan import DiscreteFamily

__all__ = ["CategoricalDisARM", "pair_weight"]


def _paired(tensor):
    """`[S, ...]` as `[S / 2, 2, ...]`: draws `2g` and `2g + 1` form pair `g`."""
    return tf.reshape(tensor, tf.concat([[-1, 2], tf.shape(tensor)[1:]], 0))


def pair_weight(logits, values, partner_values):
    """`w(z, z')` per unit for one-hot `values` and `partner_values`; 0 if equal.

    Args:
      logits: `[..., C]`; `values`, `partner_values`: one-hot `[..., C]`.

    Returns:
      `[...]`, the importance weight of the sorted stick-breaking pair.
    """
    ranks, sorted_probs, tails = sorted_stick_breaking(tf.stop_gradient(logits))
    ranks = tf.cast(ranks, values.dtype)
    level = tf.cast(
        tf.minimum(
            tf.reduce_sum(values * ranks, axis=-1),
            tf.reduce_sum(partner_values * ranks, axis=-1),
        ),
        tf.int32,
    )
    # With S_i the tails: (1 - p_i)^2 / (1 - 2 p_i) = S_{i+1}^2 / (S_i (S_{i+1} -
    # q_(i))) and 1 - p_i = S_{i+1} / S_i. The last level (p may be 1/2) never
    # enters the product, which runs over levels below an earlier one; below it
    # S_{i+1} >= 2 q_(i), so the difference does not cancel.
    log_tails = tf.math.log(tails)
    num_levels = tf.shape(tails)[-1] - 1
    inner = tf.range(num_levels) < num_levels - 1
    gap = tf.where(inner, tails[..., 1:] - sorted_probs[..., :-1], tails[..., 1:])
    log_both_pass = 2.0 * log_tails[..., 1:] - log_tails[..., :-1] - tf.math.log(gap)
    log_both_pass = tf.where(inner, log_both_pass, tf.zeros_like(log_both_pass))
    log_weights = tf.math.cumsum(log_both_pass, axis=-1, exclusive=True) + (
        log_tails[..., 1:] - log_tails[..., :-1]
    )
    at_level = tf.one_hot(level, num_levels, dtype=logits.dtype)
    weight = tf.reduce_sum(at_level * tf.exp(log_weights), axis=-1)
    same = tf.reduce_all(tf.equal(values, partner_values), axis=-1)
    return tf.where(same, tf.zeros_like(weight), weight)


def _weight(part, group_size):
    del group_size  # pairs
    if not part.categorical:
        return antithetic_correction(part.logits, 2)  # sigmoid(|a|)
    # The two draws of a pair share their logits: weigh each pair once.
    values = _paired(part.values)
    weight = pair_weight(_paired(part.logits)[:, 0], values[:, 0], values[:, 1])
    both = tf.stack([weight, weight], axis=1)
    return tf.reshape(both, tf.shape(part.values)[:-1])


class CategoricalDisARM(GradientEstimator):
    """Importance-weighted antithetic pairs for categorical (and Bernoulli) latents.

    Serves `tfd.Categorical`, `tfd.OneHotCategorical` and `tfd.Bernoulli`
    surrogates (batched, in `tfd.Independent`, or parts of a
    `JointDistribution` whose other parts are reparameterized and which do not
    depend on other parts' values). `sample_size` must be even.
    """

    plan = antithetic_plan(
        {
            DiscreteFamily.BERNOULLI,
            DiscreteFamily.CATEGORICAL,
            DiscreteFamily.ONE_HOT_CATEGORICAL,
        },
        2,
    )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_densities.surrogate))
        return f + antithetic_score_term(log_densities, f, 2, _weight)
