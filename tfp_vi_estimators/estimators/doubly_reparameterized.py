"""DOUBLY_REPARAMETERIZED: path derivatives, for every discrepancy and K.

With `lw'_k = log p(z_k) - log q_{stop(phi)}(z_k)` (the surrogate density with
stopped parameters, so only the path through `z_k = T_phi(eps_k)` remains),
`wt = softmax(lw)`, `L = log mean_k exp(lw_k)` and `f1, f2` the first two
derivatives of the discrepancy at `L`:

```none
grad_phi   = sum_k stop((f1 - f2) * wt_k^2) * d lw'_k / d z_k * d z_k / d phi
grad_theta = sum_k stop(f1 * wt_k) * grad_theta log p(z_k)
```

Derivation: the total derivative's score term
`-E[sum_k f1 wt_k grad_phi log q(z_k)]` equals, by the reparameterization
identity applied to each particle, `-E[sum_k d(f1 wt_k)/dz_k dz_k/dphi]`, and
`d(f1 wt_k)/d lw_k = f2 wt_k^2 + f1 wt_k (1 - wt_k)`; collecting terms leaves
the formula. K = 1 (wt = 1) is sticking the landing [1]; `kl_reverse`
(f1 = -1, f2 = 0) is DReG [2]; other discrepancies follow Bauer & Mnih [3].

`tfp.vi` differs in two ways, both biased: it gives theta the squared weights
`f1 wt_k^2`, and it drops the `-f2` term (for `kl_forward` at K = 1 its phi
gradient then has the wrong sign wherever `L < -1`).

**One target evaluation per particle.** theta and phi need different
coefficients on the same `log p(z_k)`. The surrogate is
`sum_k stop(f1 wt_k) lw'_k(z~_k)`, which gives theta its coefficient, where
`z~ = z` in value and its backward pass multiplies the incoming gradient of
particle k by `wt_k (1 - f2 / f1)`, turning `f1 wt_k` into
`(f1 - f2) wt_k^2` on the path to phi. The multiplier is only known after the
target has been evaluated at `z~`, so it is sent backwards as data: the plan
asks for samples drawn through `gradient_scale.scalable`
(`PathGradient.SCALED`), whose zero port reaches the estimator as
`LogDensities.scale_port`; the surrogate adds `send_scale(port, multiplier)`,
zero in value, whose backward pass hands the multiplier to the port and so to
the samples' gradient. Nothing is stored between the passes.
Where `f1` is exactly zero the
surrogate's coefficient is zero and that draw contributes no phi gradient (the
`-f2` term is lost on that measure-zero set).

#### References

[1] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing:
    simple, lower-variance gradient estimators for variational inference.
    NeurIPS 2017. arXiv:1703.09194.
[2] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison. Doubly
    reparameterized gradient estimators for Monte Carlo objectives. ICLR 2019.
    arXiv:1810.04152.
[3] Matthias Bauer and Andriy Mnih. Generalized doubly reparameterized gradient
    estimators. ICML 2021. arXiv:2101.11046.
"""

import tensorflow as tf

from tfp_vi_estimators._internal.discrepancy import discrepancy_derivatives
from tfp_vi_estimators.estimators.base import (
    GradientEstimator,
    log_mean_exp,
    pathwise_plan,
    with_gradient_of,
)
from tfp_vi_estimators.estimators.gradient_scale import send_scale
from tfp_vi_estimators.estimators.plan import Density, PathGradient


class DoublyReparameterized(GradientEstimator):
    """Path-derivative estimator: STL at K = 1, generalized DReG at K > 1.

    Args:
      score_weight: c in [0, 1]. `log q` is replaced by
        `c log q' + (1 - c) log q` (Roeder et al. section 4.2): c = 1 is the
        path derivative (sticking the landing / DReG), c = 0 the total
        derivative (REPARAMETERIZATION's gradient), values between blend the
        two unbiased estimators linearly. `'adaptive'` (or an
        `adaptive_score_weight.AdaptiveScoreWeight`) chooses c at every
        training step to minimize the gradient's variance, from earlier
        steps' draws (`adaptive_score_weight`). Default value: `1.0`.
    """

    def __new__(cls, score_weight=1.0):
        if cls is DoublyReparameterized and not isinstance(score_weight, (int, float)):
            # Imported here: the adaptive estimator subclasses this one.
            from tfp_vi_estimators.estimators import adaptive_score_weight as adaptive

            if score_weight == "adaptive" or isinstance(
                score_weight, adaptive.AdaptiveScoreWeight
            ):
                cls = adaptive.AdaptivelyWeightedDoublyReparameterized
        return super().__new__(cls)

    def __init__(self, score_weight=1.0):
        if isinstance(score_weight, bool) or not isinstance(score_weight, (int, float)):
            raise TypeError(
                "`score_weight` must be a float in [0, 1] or 'adaptive'; got "
                f"{score_weight!r}."
            )
        if not 0.0 <= score_weight <= 1.0:
            raise ValueError(f"`score_weight` must be in [0, 1]; got {score_weight}.")
        self.score_weight = float(score_weight)
        densities = [Density.STOPPED_PARAMETERS]
        if self.score_weight < 1.0:
            densities.append(Density.STOPPED_SAMPLE)
        self.plan = pathwise_plan(*densities, path_gradient=PathGradient.SCALED)

    def per_draw_loss(self, log_densities, discrepancy_fn):
        c = self.score_weight
        log_weights = log_densities.target - log_densities.stopped_parameters
        if c < 1.0:
            # Adds -(1 - c) d log q / d phi at fixed z (the total derivative's
            # score term, weighted); the value is unchanged.
            log_q_params = log_densities.stopped_sample
            log_weights -= (1.0 - c) * (log_q_params - tf.stop_gradient(log_q_params))
        log_mean = log_mean_exp(log_weights)
        f1, f2 = discrepancy_derivatives(discrepancy_fn, log_mean)
        f1 = tf.expand_dims(f1, axis=1)
        f2 = tf.expand_dims(f2, axis=1)
        weights = tf.stop_gradient(tf.nn.softmax(log_weights, axis=1))
        # theta's coefficient is f1 wt; the path to phi needs
        # c (f1 - f2) wt^2 + (1 - c) f1 wt, hence this multiplier on z's gradient.
        multiplier = c * path_scale(weights, f1, f2) + (1.0 - c)
        terms = tf.stop_gradient(f1 * weights) * log_weights
        terms += send_scale(log_densities.scale_port, multiplier)  # zero in value
        surrogate = tf.reduce_sum(terms, axis=1)
        return with_gradient_of(discrepancy_fn(log_mean), surrogate)

    def __repr__(self):
        return f"DoublyReparameterized(score_weight={self.score_weight})"


def path_scale(weights, f1, f2):
    """`wt (1 - f2 / f1)`: turns the path coefficient `f1 wt` into `(f1 - f2) wt^2`.

    `weights` (self-normalized, stopped) are `[S, K] + batch`; `f1`, `f2` are
    the discrepancy's derivatives at `L`, `[S, 1] + batch`.
    """
    return weights * (1.0 - tf.math.divide_no_nan(f2, f1))
