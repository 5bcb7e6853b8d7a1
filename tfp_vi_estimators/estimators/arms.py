"""ARMS and DisARM: antithetic multi-sample score functions for Bernoulli latents.

The `n` draws of a group are mutually antithetic: the uniform behind each
Bernoulli unit comes from a Dirichlet copula shared by the group (see
`_internal/discrete_couplings.py`; a unit takes its rare outcome when
`u < r = sigmoid(-|a|)`). Two draws' values of one unit are then correlated,
`rho(a) = (C(r, r) - r^2) / (r (1 - r))`, and the leave-one-out score function
of the group, divided by `1 - rho`, is unbiased (Dimitriev & Zhou [1]):

```none
f_i = f(L_i),   i = 1..n (one group),   f_bar = mean_i f_i
grad_a = 1 / ((n - 1) (1 - rho(a))) sum_i (f_i - f_bar) (b_i - sigmoid(a))
surrogate_i = f_i + sum_units stop(n / (n - 1) (f_i - f_bar) / (1 - rho)) log q(b_i)
```

per unit `a` (the `(b_i - sigmoid(a))` is `d log q(b_i) / d a`). With `n = 2`,
`u_2 = 1 - u_1`, `1 / (1 - rho) = sigmoid(|a|)` and the estimator is DisARM
(Dong, Mnih & Tucker [2]):

```none
grad_a = 1/2 (f(b) - f(b')) (b - b') sigmoid(|a|)
```

With independent draws (`rho = 0`) it would be leave-one-out REINFORCE
(`ScoreFunction('leave_one_out')`). The direct dependence of `f` on the
parameters (through `log q` and a target's parameters) and the pathwise
gradient of reparameterized parts of a joint surrogate are kept as the mixed
estimator keeps them. Unbiased for every discrepancy and every
`importance_sample_size` K: a draw's K particles are K more units, each
coupled across the group's draws.

`sample_size` counts draws, that is target evaluations per particle: it must
be a multiple of the group size `n`, and the draws form `sample_size / n`
independent groups. DisARM with `sample_size=2` costs what
`ScoreFunction('leave_one_out')` with `sample_size=2` costs.

#### References

[1] Alek Dimitriev and Mingyuan Zhou. ARMS: Antithetic-REINFORCE-Multi-Sample
    gradient for binary variables. ICML 2021. arXiv:2105.14141.
[2] Zhe Dong, Andriy Mnih and George Tucker. DisARM: An antithetic gradient
    estimator for binary latent variables. NeurIPS 2020. arXiv:2006.10680.
"""

import tensorflow as tf

from tfp_vi_estimators._internal.discrete_couplings import antithetic_correction
from tfp_vi_estimators.estimators import discrete
from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp
from tfp_vi_estimators.estimators.plan import (
    Density,
    DiscreteDraws,
    DiscreteFamily,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)

__all__ = ["ARMS", "DisARM", "antithetic_plan", "antithetic_score_term"]


def antithetic_plan(families, group_size):
    """The plan of an estimator reading groups of antithetic discrete draws."""
    return SamplingPlan(
        needs=Needs.NONE,
        layout=Layout.DRAWS_FIRST,
        path_gradient=PathGradient.LIVE,
        densities=frozenset({Density.SURROGATE}),
        min_sample_size=group_size or 2,
        discrete=DiscreteDraws(families=frozenset(families), group_size=group_size),
    )


def antithetic_score_term(log_densities, f, group_size, weight_fn):
    """`sum_i stop(n / (n - 1) (f_i - f_bar) w) log q(b_i)` over every part.

    `weight_fn(part, group_size)` is the per-unit weight `w` (`1 / (1 - rho)`
    for ARMS); `group_size` is `n`, or `None` for all the draws.
    """
    group_size = group_size or tf.compat.dimension_value(f.shape[0])
    batch_rank = f.shape.rank - 1
    centred = f - discrete.group_mean(f, group_size)
    scale = group_size / (group_size - 1.0)
    term = tf.zeros_like(f)
    for part in log_densities.discrete:
        weight = weight_fn(part, group_size)
        coefficient = scale * discrete.spread(centred, weight, batch_rank) * weight
        term += discrete.per_draw_sum(
            tf.stop_gradient(coefficient) * discrete.unit_log_prob(part), batch_rank
        )
    return term - tf.stop_gradient(term)


def _arms_weight(part, group_size):
    return antithetic_correction(part.logits, group_size)


class ARMS(GradientEstimator):
    """Antithetic-REINFORCE-multi-sample gradients for Bernoulli latents.

    Serves `tfd.Bernoulli` surrogates (batched, in `tfd.Independent`, or parts
    of a `JointDistribution` whose other parts are reparameterized and which
    do not depend on other parts' values).

    Args:
      num_draws: `n >= 2`, the draws of one group of mutually antithetic
        draws; `sample_size` must be a multiple of it. Default value: `None`,
        all `sample_size` draws form one group.

    Raises:
      ValueError: if `num_draws` is not None or an integer of at least 2.
    """

    def __init__(self, num_draws=None):
        if num_draws is not None and (
            isinstance(num_draws, bool) or not isinstance(num_draws, int)
        ):
            raise TypeError(
                f"`num_draws` must be None or a Python int >= 2; got {num_draws!r}."
            )
        if num_draws is not None and num_draws < 2:
            raise ValueError(f"`num_draws` must be at least 2; got {num_draws}.")
        self.num_draws = num_draws
        self.plan = antithetic_plan({DiscreteFamily.BERNOULLI}, num_draws)

    def per_draw_loss(self, log_densities, discrepancy_fn):
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_densities.surrogate))
        return f + antithetic_score_term(log_densities, f, self.num_draws, _arms_weight)

    def __repr__(self):
        return f"ARMS(num_draws={self.num_draws})"


class DisARM(ARMS):
    """DisARM: ARMS with antithetic pairs (`num_draws=2`).

    `sample_size` must be even; the draws form `sample_size / 2` pairs.
    """

    def __init__(self):
        super().__init__(num_draws=2)

    def __repr__(self):
        return "DisARM()"
