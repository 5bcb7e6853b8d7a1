"""Grathwohl et al.'s toy: minimise `E[(b - 0.499)^2]`, `b ~ Bernoulli(theta)`.

The gradient with respect to the logit `a` (`theta = sigmoid(a)`) is tiny
beside the values: `theta (1 - theta) (0.501^2 - 0.499^2) = 0.002 theta (1 -
theta)`, so an estimator's noise decides whether the sign is found (RELAX
[1], Fig. 1; DisARM [2] uses the same toy). The section reaches every
estimator through `monte_carlo_variational_loss`, whose loss is a KL: with
the unnormalised target `log p_T(b) = -(b - 0.499)^2 / T`,

```none
T KL(q || p_T) = E_q[(b - 0.499)^2] + T E_q[log q(b)],
d / d a        = theta (1 - theta) (0.002 + T a)             (exact)
```

and the gradients are multiplied by `T` (`SCALE = 1e-6`): the entropy's
per-draw term `T (b - theta)` adds a variance of `T^2 theta (1 - theta) / S`,
far below every estimator's here. Computed in float64; `num_draws`
independent gradients come from one call (the logit is batched: member `n`
has its own copy and its own draws).

RELAX's control variate is an `MLPControlVariate` of the relaxed value
(scaled by `1 / T`, so its weights live in the toy's units), trained for
`relax_steps` Adam steps at the fixed logit by `fit_surrogate_posterior`
(only the control variate's variables), as RELAX trains it: down the
gradient's variance.

#### References

[1] Will Grathwohl, Dami Choi, Yuhuai Wu, Geoffrey Roeder and David
    Duvenaud. Backpropagation through the void. ICLR 2018. arXiv:1711.00123.
[2] Zhe Dong, Andriy Mnih and George Tucker. DisARM: An antithetic gradient
    estimator for binary latent variables. NeurIPS 2020. arXiv:2006.10680.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import estimators
from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.fitting import fit_surrogate_posterior
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions

__all__ = ["SCALE", "TOY_ARMS", "ToyArm", "exact_gradient", "toy_row"]

TARGET = 0.499
SCALE = 1e-6
F64 = tf.float64


@dataclasses.dataclass(frozen=True)
class ToyArm:
    """One estimator on the toy.

    Attributes:
      label: its name in the table.
      estimator: `() -> estimator`, or `'relax'` for a trained RELAX.
      sample_size: S, the draws (evaluations of the function) per gradient.
      straight_through: the surrogate is the relaxed straight-through
        Bernoulli (temperature 0.5).
      biased: whether the estimator is biased.
    """

    label: str
    estimator: object
    sample_size: int = 2
    straight_through: bool = False
    biased: bool = False


TOY_ARMS = (
    ToyArm("REINFORCE, no baseline", lambda: GradientEstimators.SCORE_FUNCTION),
    ToyArm("REINFORCE LOO", lambda: estimators.ScoreFunction("leave_one_out")),
    ToyArm("DisARM", estimators.DisARM),
    ToyArm("RELAX (trained c)", "relax", sample_size=1),
    ToyArm(
        "REINFORCE LOO S=4",
        lambda: estimators.ScoreFunction("leave_one_out"),
        sample_size=4,
    ),
    ToyArm("ARMS S=4", lambda: estimators.ARMS(4), sample_size=4),
    ToyArm(
        "straight-through",
        lambda: estimators.GumbelRao(1),
        straight_through=True,
        biased=True,
    ),
    ToyArm(
        "Gumbel-Rao (M=10)",
        lambda: estimators.GumbelRao(10),
        straight_through=True,
        biased=True,
    ),
)


def exact_gradient(theta):
    """`d / d a` of `T KL(q || p_T)` at `theta` (see the module docstring)."""
    logit = math.log(theta / (1.0 - theta))
    return theta * (1.0 - theta) * ((1 - TARGET) ** 2 - TARGET**2 + SCALE * logit)


def _target_log_prob(b):
    return -tf.reduce_sum(tf.square(tf.cast(b, F64) - TARGET), -1) / SCALE


def _surrogate(logits, straight_through):
    if straight_through:
        inner = RelaxedBernoulliStraightThrough(tf.constant(0.5, F64), logits=logits)
    else:
        inner = tfd.Bernoulli(logits=logits, dtype=F64)
    return tfd.Independent(inner, 1)


class _ScaledControlVariate(tf.Module):
    """`c(x) / T`: an `MLPControlVariate` in the toy's units."""

    def __init__(self, seed):
        super().__init__(name="scaled_control_variate")
        self.inner = estimators.MLPControlVariate(1, 16, dtype=F64, seed=seed)

    def __call__(self, x):
        return self.inner(x) / SCALE


def _trained_relax(logits, steps, seed):
    """RELAX whose control variate was fitted at `logits` for `steps` steps."""
    relax = estimators.RELAX(_ScaledControlVariate(seed))
    if steps:
        fit_surrogate_posterior(
            _target_log_prob,
            _surrogate(logits, False),
            optimizer=tf.keras.optimizers.Adam(0.01),
            num_steps=steps,
            gradient_estimator=relax,
            trainable_variables=relax.trainable_variables,
            seed=(seed, 1),
        )
    return relax


def _gradient_draws(arm, theta, num_draws, relax_steps, seed):
    """`num_draws` independent gradients of `T KL` with respect to the logit."""
    logit = math.log(theta / (1.0 - theta))
    logits = tf.Variable(tf.fill([num_draws, 1], tf.constant(logit, F64)))
    if arm.estimator == "relax":
        estimator = _trained_relax(logits, relax_steps, seed)
    else:
        estimator = arm.estimator()
    with tf.GradientTape() as tape:
        loss = monte_carlo_variational_loss(
            _target_log_prob,
            _surrogate(logits, arm.straight_through),
            sample_size=arm.sample_size,
            gradient_estimator=estimator,
            seed=(seed, 2),
        )
        total = tf.reduce_sum(loss)
    return SCALE * tape.gradient(total, logits).numpy()[:, 0]


def toy_row(arm, theta, num_draws, relax_steps, seed):
    """One table cell's numbers: mean, exact, z of the mean (NaN where the
    draws are all exact), variance, and the fraction of draws whose sign is
    the exact gradient's."""
    draws = _gradient_draws(arm, theta, num_draws, relax_steps, seed)
    exact = exact_gradient(theta)
    error = draws.std(ddof=1) / math.sqrt(num_draws)
    exact_floor = 1e-9 * abs(exact)
    return dict(
        estimator=arm.label,
        theta=theta,
        evaluations=arm.sample_size,
        biased=arm.biased,
        mean=float(draws.mean()),
        exact=exact,
        # NaN where the estimator is exact (DisARM at theta = 1/2): the
        # standard error is rounding, about 1e-16 of the gradient.
        z=float((draws.mean() - exact) / error) if error > exact_floor else math.nan,
        variance=float(draws.var(ddof=1)),
        sign_right=float(np.mean(np.sign(draws) == np.sign(exact))),
    )
