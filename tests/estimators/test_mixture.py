"""Sticking the landing for mixtures (Roeder et al. Alg. 3)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, two_sample_z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

tfd = tfp.distributions
LOGITS, LOCS, SCALES = [0.3, -0.5, 0.1], [-2.0, 0.5, 2.5], [0.6, 1.0, 0.8]


def _mixture(logits, locs, scales, reparameterize=False):
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=logits),
        tfd.Normal(locs, scales),
        reparameterize=reparameterize,
    )


def _batched_variables(num_draws, shift):
    def var(v):
        return tf.Variable(
            tf.tile(tf.constant([v], tf.float64) + shift, [num_draws, 1])
        )

    return var(LOGITS), var(LOCS), var(SCALES)


def test_gradient_is_exactly_zero_when_surrogate_equals_target():
    logits, locs, scales = (tf.Variable(v) for v in (LOGITS, LOCS, SCALES))
    q = _mixture(logits, locs, scales)
    target = _mixture(LOGITS, LOCS, SCALES)
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            lambda z: target.log_prob(z) - 20.0,
            q,
            sample_size=16,
            gradient_estimator=estimators.MixtureStickingTheLanding(),
            seed=(1, 2),
        )
    for g in tape.gradient(loss, [logits, locs, scales]):
        np.testing.assert_array_equal(g, np.zeros_like(g))
    np.testing.assert_allclose(loss, 20.0, rtol=1e-6)


def test_unbiased_against_implicitly_reparameterized_total_derivative():
    num_draws = 20_000
    target = _mixture(
        *(
            tf.constant(v, tf.float64)
            for v in ([0.0, 0.2, -0.3], [-1.5, 0.0, 2.0], [0.7, 0.9, 1.1])
        )
    )
    ours_vars = _batched_variables(num_draws, 0.1)
    ref_vars = _batched_variables(num_draws, 0.1)

    def loss(variables, estimator, reparameterize, seed):
        q = _mixture(*variables, reparameterize=reparameterize)
        return lambda: tve.monte_carlo_variational_loss(
            target.log_prob, q, sample_size=2, gradient_estimator=estimator, seed=seed
        )

    ours = per_draw_gradients(
        loss(ours_vars, estimators.MixtureStickingTheLanding(), False, (1, 1)),
        ours_vars,
    )
    reference = per_draw_gradients(
        loss(ref_vars, tve.GradientEstimators.REPARAMETERIZATION, True, (2, 2)),
        ref_vars,
    )
    ours = [g.reshape(num_draws, -1) for g in ours]
    reference = [g.reshape(num_draws, -1) for g in reference]
    for a, b in zip(ours, reference, strict=True):
        z = two_sample_z_scores(list(a.T), list(b.T))
        assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(importance_sample_size=2), "importance_sample_size"),
        (dict(discrepancy_fn=tve.kl_forward), "kl_reverse"),
    ],
)
@mode_parameter
def test_refuses_what_it_cannot_do_unbiasedly(kwargs, match, mode):
    q = _mixture(tf.Variable(LOGITS), LOCS, SCALES)

    def call():
        return tve.monte_carlo_variational_loss(
            q.log_prob,
            q,
            gradient_estimator=estimators.MixtureStickingTheLanding(),
            **kwargs,
        )

    assert_raises(mode, call, ValueError, match)


@mode_parameter
def test_refuses_non_mixture_surrogate(mode):
    q = tfd.Normal(tf.Variable(0.0), 1.0)

    def call():
        return tve.monte_carlo_variational_loss(
            tfd.Normal(0.0, 1.0).log_prob,
            q,
            gradient_estimator=estimators.MixtureStickingTheLanding(),
        )

    assert_raises(mode, call, ValueError, "MixtureSameFamily")
