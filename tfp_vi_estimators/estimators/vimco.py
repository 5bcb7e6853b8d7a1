"""VIMCO: the score function with a per-particle leave-one-out baseline.

```none
z_k ~ q_phi, stopped, k = 1..K (K >= 2);   lw_k = log p(z_k) - log q_phi(z_k)
L      = log mean_j exp(lw_j)
L_{-k} = L with lw_k replaced by mean_{j != k} lw_j     (swap-out geometric mean)
surrogate = f(L) + sum_k stop(f(L) - f(L_{-k})) * log q_phi(z_k)
```

Generalized to Csiszar functions as in `tfp.vi.csiszar_vimco`; the swap-out
averages come from `tfp.stats.log_soomean_exp`. O(K) per draw.

#### References

[1] Andriy Mnih and Danilo Rezende. Variational inference for Monte Carlo
    objectives. ICML 2016. arXiv:1602.06725.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.estimators.base import GradientEstimator, with_gradient_of
from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)


class VIMCO(GradientEstimator):
    """Mnih & Rezende's multi-sample score-function estimator (K >= 2)."""

    # tfp.vi draws VIMCO's samples particles first; so do we (same samples).
    plan = SamplingPlan(
        needs=Needs.NONE,
        layout=Layout.PARTICLES_FIRST,
        path_gradient=PathGradient.STOPPED,
        densities=frozenset({Density.SURROGATE}),
        min_importance_sample_size=2,
    )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        log_q = log_densities.surrogate
        log_swap_out_mean, log_mean = tfp.stats.log_soomean_exp(
            log_densities.target - log_q, axis=1
        )
        f = discrepancy_fn(log_mean)
        f_swap_out = discrepancy_fn(log_swap_out_mean)
        learning_signal = tf.stop_gradient(tf.expand_dims(f, axis=1) - f_swap_out)
        score = tf.reduce_sum(learning_signal * log_q, axis=1)
        return with_gradient_of(f, f + score)
