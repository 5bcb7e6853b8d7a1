"""Mixed surrogates: pathwise where reparameterized, score function elsewhere.

For a `JointDistribution` surrogate with some parts reparameterized (Normals)
and others not (a Bernoulli, a Categorical, a Poisson), with `z_d` the
non-reparameterized parts and `pa(z_d)` their parents (evaluated with their
pathwise gradient intact):

```none
lw_k = log p(z_k) - log q_phi(z_k),   z_k drawn with reparameterized parts live
surrogate = f(L) + stop(f(L) - b) * sum_k log q_phi(z_d,k | pa(z_d,k))
```

This is the surrogate of a stochastic computation graph [1]: pathwise
derivatives flow through the reparameterized parts, and each
non-reparameterized node contributes its score times the (baselined)
downstream value. Unbiased for every K; `tfp.vi` instead differentiates
through the parts that cannot be differentiated and warns that the result
"may be biased".

#### References

[1] John Schulman, Nicolas Heess, Theophane Weber and Pieter Abbeel. Gradient
    estimation using stochastic computation graphs. NeurIPS 2015.
    arXiv:1506.05254.
"""

import tensorflow as tf

from tfp_vi_estimators.estimators.base import log_mean_exp
from tfp_vi_estimators.estimators.baselines import (
    BaselinedEstimator,
    make_baseline,
    score_term,
)
from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)


class MixedReparameterization(BaselinedEstimator):
    """Pathwise gradients plus a baselined score term for discrete parts.

    Args:
      baseline: as for `ScoreFunction`; the default `'auto'` is the
        leave-one-out baseline when `sample_size >= 2` and none otherwise.
      decay: decay of the `'moving_average'` baseline. Default value: `0.9`.
    """

    score_density = "non_reparameterized"

    def __init__(self, baseline="auto", decay=0.9):
        self.baseline = make_baseline(baseline, decay)
        self.plan = SamplingPlan(
            needs=Needs.PARTIAL,
            layout=Layout.DRAWS_FIRST,
            path_gradient=PathGradient.LIVE,
            densities=frozenset({Density.SURROGATE, Density.NON_REPARAMETERIZED}),
            min_sample_size=self.baseline.min_sample_size,
        )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_densities.surrogate))
        score = tf.reduce_sum(log_densities.non_reparameterized, axis=1)
        return f + score_term(f, self.baseline, score)

    def __repr__(self):
        return f"MixedReparameterization(baseline={self.baseline!r})"
