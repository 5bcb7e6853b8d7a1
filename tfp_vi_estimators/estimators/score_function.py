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
baseline `b` that does not depend on the current draw. `tfp.vi` refuses K > 1.

#### References

[1] R. J. Williams. Simple statistical gradient-following algorithms for
    connectionist reinforcement learning. Machine Learning, 8(3-4), 1992.
[2] Shakir Mohamed. Machine learning trick of the day: log derivative trick.
    2015.
"""

import tensorflow as tf

from tfp_vi_estimators.estimators.base import (
    GradientEstimator,
    log_mean_exp,
    with_gradient_of,
)


class ScoreFunction(GradientEstimator):
    """The score-function (REINFORCE) estimator, valid for every K."""

    reparameterized_samples = False

    def baseline(self, per_draw_values):
        """Baseline `b` for each draw; zero here. Must not depend on its own draw."""
        return tf.zeros_like(per_draw_values)

    def per_draw_loss(self, target_log_prob, surrogate_log_prob, discrepancy_fn, state):
        del state
        f = discrepancy_fn(log_mean_exp(target_log_prob - surrogate_log_prob))
        score = tf.reduce_sum(surrogate_log_prob, axis=1)
        return with_gradient_of(f, f + tf.stop_gradient(f - self.baseline(f)) * score)
