"""ELBOs with closed-form entropy / KL: unbiased values and gradients."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import (
    LIKELIHOOD_SCALE,
    X_OBSERVED,
    Z_TOLERANCE,
    DecoderProblem,
    closed_form_z_scores,
    per_draw_gradients,
    z_scores,
)

import tfp_vi_estimators as tve

tfd = tfp.distributions
NUM_DRAWS = 20_000


def _losses(problem):
    def log_likelihood(z):
        return tfd.Normal(problem.theta * z, LIKELIHOOD_SCALE).log_prob(
            tf.constant(X_OBSERVED, z.dtype)
        )

    prior = tfd.Normal(tf.constant(0.0, tf.float64), 1.0)
    return {
        "entropy": lambda: tve.elbo_with_analytic_entropy(
            problem.target_log_prob, problem.surrogate, sample_size=2, seed=(1, 4)
        ),
        "kl": lambda: tve.elbo_with_analytic_kl(
            log_likelihood, prior, problem.surrogate, sample_size=2, seed=(1, 4)
        ),
    }


@pytest.mark.parametrize("kind", ["entropy", "kl"])
def test_value_and_gradient_unbiased(kind):
    problem = DecoderProblem(NUM_DRAWS)
    loss = _losses(problem)[kind]
    values = loss().numpy()
    assert abs(z_scores(values, problem.negative_elbo().numpy()[0])) < Z_TOLERANCE
    z = closed_form_z_scores(problem, per_draw_gradients(loss, problem.variables))
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_refuses_discrete_surrogate():
    with pytest.raises(ValueError, match="reparameterized"):
        tve.elbo_with_analytic_entropy(
            tfd.Poisson(1.0).log_prob, tfd.Poisson(tf.Variable(2.0))
        )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(log_likelihood_fn=None), TypeError, "log_likelihood_fn"),
        (dict(prior="normal"), TypeError, "prior"),
        (dict(sample_size=0), ValueError, "sample_size"),
    ],
)
@mode_parameter
def test_bad_arguments(kwargs, error, match, mode):
    args = dict(
        log_likelihood_fn=tfd.Normal(0.0, 1.0).log_prob,
        prior=tfd.Normal(0.0, 1.0),
        surrogate_posterior=tfd.Normal(tf.Variable(0.0), 1.0),
    )
    args.update(kwargs)
    assert_raises(mode, lambda: tve.elbo_with_analytic_kl(**args), error, match)
