"""SCORE_FUNCTION (REINFORCE): gradients without differentiating the samples.

```none
z_k ~ q_phi, stopped;   lw_k = log p(z_k) - log q_phi(z_k);   L = log mean_k exp(lw_k)
surrogate = f(L) + stop(f(L) - b) * sum_k log q_phi(z_k)
```

`f(L)` keeps its direct dependence on phi through `log q_phi` and on the model
parameters theta through `log p`; the second term is the score-function
correction for the dependence of the samples on phi. It is unbiased for every
`importance_sample_size` K (the K particles of one draw are one joint sample
of `prod_k q(z_k)`, whose score is `sum_k grad log q(z_k)`), and for any
baseline `b` that does not depend on the current draw (see `baselines`).
`tfp.vi` refuses K > 1.

#### References

[1] R. J. Williams. Simple statistical gradient-following algorithms for
    connectionist reinforcement learning. Machine Learning, 8(3-4), 1992.
[2] Shakir Mohamed. Machine learning trick of the day: log derivative trick.
    2015.
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


class ScoreFunction(BaselinedEstimator):
    """The score-function (REINFORCE) estimator, valid for every K.

    Args:
      baseline: None, `'leave_one_out'` (over the `sample_size` independent
        draws; needs `sample_size >= 2`), `'moving_average'` (an average of
        earlier steps' losses, carried in the estimator's state by training
        steps only: `baselines.BaselinedEstimator`), or a
        callable `baseline()` returning a tensor broadcastable to
        `[sample_size] + batch_shape` that does not depend on the current
        draw; its variables are trained to fit the loss when optimized along.
      decay: decay of the moving average. Default value: `0.9`.
    """

    def __init__(self, baseline=None, decay=0.9):
        self.baseline = make_baseline(baseline, decay)
        self.plan = SamplingPlan(
            needs=Needs.NONE,
            layout=Layout.DRAWS_FIRST,
            path_gradient=PathGradient.STOPPED,
            densities=frozenset({Density.SURROGATE}),
            min_sample_size=self.baseline.min_sample_size,
        )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        log_q = log_densities.surrogate
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_q))
        return f + score_term(f, self.baseline, tf.reduce_sum(log_q, axis=1))

    def __repr__(self):
        return f"ScoreFunction(baseline={self.baseline!r})"
