"""Mixed Normal + Bernoulli surrogates: exact mean gradient, lower variance.

q(z, b) = N(z; m, s^2) Bernoulli(b; sigmoid(l)); p(z, b) = N(z; mu_b, 1) pi_b
(times a constant), so the ELBO is a closed form summed over b, and its
gradient is the reference. Tolerances in standard errors (see stat_helpers).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimator_choice import resolve_gradient_estimator

tfd = tfp.distributions
GE = tve.GradientEstimators
NUM_DRAWS = 20_000
MU = (-1.0, 1.5)  # mu_0, mu_1
LOG_PI = (np.log(0.3), np.log(0.7))
OFFSET = -15.0


class MixedProblem:
    def __init__(self, num_draws):
        full = lambda v: tf.fill([num_draws], tf.constant(v, tf.float64))  # noqa: E731
        self.m, self.log_s, self.logit = (
            tf.Variable(full(0.2)),
            tf.Variable(full(np.log(0.8))),
            tf.Variable(full(-0.4)),
        )
        self.variables = [self.m, self.log_s, self.logit]
        self.surrogate = tfd.JointDistributionNamed(
            dict(
                z=tfd.Normal(self.m, tfp.util.DeferredTensor(self.log_s, tf.exp)),
                b=tfd.Bernoulli(logits=self.logit, dtype=tf.int32),
            )
        )

    @staticmethod
    def target_log_prob(z, b):
        on = tf.equal(b, 1)
        mu = tf.where(on, tf.constant(MU[1], z.dtype), MU[0])
        log_pi = tf.where(on, tf.constant(LOG_PI[1], z.dtype), LOG_PI[0])
        return tfd.Normal(mu, tf.constant(1.0, z.dtype)).log_prob(z) + log_pi + OFFSET

    def negative_elbo(self):
        s = tf.exp(self.log_s)
        p1 = tf.sigmoid(self.logit)
        expected = 0.0
        for prob, mu, log_pi in ((1 - p1, MU[0], LOG_PI[0]), (p1, MU[1], LOG_PI[1])):
            e_log_normal = -0.5 * np.log(2 * np.pi) - 0.5 * ((self.m - mu) ** 2 + s**2)
            expected += prob * (e_log_normal + log_pi)
        entropy = 0.5 * np.log(2 * np.pi * np.e) + tf.math.log(s)
        entropy += tfd.Bernoulli(logits=self.logit).entropy()
        return -(expected + OFFSET + entropy)


def _loss(problem, estimator, sample_size=8):
    return lambda: tve.monte_carlo_variational_loss(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=sample_size,
        gradient_estimator=estimator,
        seed=(5, 8),
    )


@pytest.mark.parametrize(
    "estimator",
    [
        GE.REPARAMETERIZATION,
        GE.DOUBLY_REPARAMETERIZED,
        None,
        estimators.MixedReparameterization(None),
    ],
    ids=["REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "default", "no_baseline"],
)
def test_mean_gradient_equals_enumerated_exact_gradient(estimator):
    problem = MixedProblem(NUM_DRAWS)
    draws = per_draw_gradients(_loss(problem, estimator), problem.variables)
    exact = per_draw_gradients(problem.negative_elbo, problem.variables)
    z = np.array([z_scores(d, e[0]) for d, e in zip(draws, exact, strict=True)])
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_variance_below_all_score_function():
    problem = MixedProblem(NUM_DRAWS)
    mixed = per_draw_gradients(_loss(problem, None), problem.variables)
    score = per_draw_gradients(_loss(problem, GE.SCORE_FUNCTION), problem.variables)
    ratios = [s.var() / m.var() for m, s in zip(mixed, score, strict=True)]
    print("variance ratio (score function / mixed):", ratios)
    assert all(r > 1.0 for r in ratios), ratios


@pytest.mark.parametrize(
    "member", [None, GE.REPARAMETERIZATION, GE.DOUBLY_REPARAMETERIZED]
)
def test_mixed_surrogate_dispatches_to_mixed_estimator(member):
    q = MixedProblem(1).surrogate
    assert isinstance(
        resolve_gradient_estimator(member, None, q), estimators.MixedReparameterization
    )


@mode_parameter
def test_explicit_full_reparameterization_object_is_refused_with_alternatives(mode):
    q = MixedProblem(1).surrogate

    def call():
        return tve.monte_carlo_variational_loss(
            lambda z: tf.zeros([1]),
            q,
            gradient_estimator=estimators.Reparameterization(),
        )

    assert_raises(mode, call, ValueError, "MixedReparameterization")


def test_all_discrete_joint_falls_back_to_score_function_with_warning():
    q = tfd.JointDistributionSequential([tfd.Bernoulli(0.3), tfd.Poisson(2.0)])
    with pytest.warns(UserWarning, match="score-function"):
        chosen = resolve_gradient_estimator(None, None, q)
    assert isinstance(chosen, estimators.ScoreFunction)
