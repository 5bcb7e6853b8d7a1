"""DOUBLY_REPARAMETERIZED: unbiased for every discrepancy, K and model parameter.

Reference: the total-derivative gradient (REPARAMETERIZATION) on the same
problem and seed. Differences are paired per draw, and the mean difference
must be within `Z_TOLERANCE` standard errors of zero (see stat_helpers). The
same check is run on tfp.vi's estimator and must fail there: that is what
shows the check has the power to catch the bias it is written for.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import (
    Z_TOLERANCE,
    DecoderProblem,
    closed_form_z_scores,
    per_draw_gradients,
    variational_loss,
    z_scores,
)

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

GE = tve.GradientEstimators

NUM_DRAWS = 20_000
DISCREPANCIES = {
    "kl_reverse": tve.kl_reverse,
    "kl_forward": tve.kl_forward,
    "chi_square": tve.chi_square,
    "pearson": tve.pearson,
    "jensen_shannon": tve.jensen_shannon,
    "amari_alpha_0.5": functools.partial(tve.amari_alpha, alpha=0.5),
}


def _paired_z_scores(problem, loss_fn, reference_fn):
    ours = per_draw_gradients(loss_fn, problem.variables)
    reference = per_draw_gradients(reference_fn, problem.variables)
    return np.array([z_scores(a - b) for a, b in zip(ours, reference, strict=True)])


def _losses(problem, discrepancy_fn, importance_sample_size, seed=(7, 11)):
    ours, reference = (
        variational_loss(
            problem, estimator, importance_sample_size, discrepancy_fn, seed
        )
        for estimator in (GE.DOUBLY_REPARAMETERIZED, GE.REPARAMETERIZATION)
    )
    tfp_version = functools.partial(
        tfp.vi.monte_carlo_variational_loss,
        problem.target_log_prob,
        problem.surrogate,
        sample_size=1,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        gradient_estimator=tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED,
        stopped_surrogate_posterior=problem.stopped_surrogate(),
        seed=seed,
    )
    return ours, reference, tfp_version


@pytest.mark.parametrize("importance_sample_size", [1, 4])
@pytest.mark.parametrize("discrepancy", sorted(DISCREPANCIES))
def test_unbiased_against_total_derivative(discrepancy, importance_sample_size):
    problem = DecoderProblem(NUM_DRAWS)
    ours, reference, _ = _losses(
        problem, DISCREPANCIES[discrepancy], importance_sample_size
    )
    z = _paired_z_scores(problem, ours, reference)
    assert np.all(np.abs(z) < Z_TOLERANCE), z  # loc, log_scale, theta


def test_matches_closed_form_elbo_gradient():
    problem = DecoderProblem(NUM_DRAWS)
    ours, _, _ = _losses(problem, tve.kl_reverse, 1)
    z = closed_form_z_scores(problem, per_draw_gradients(ours, problem.variables))
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_lower_variance_than_reparameterization_near_optimum():
    # Near the posterior the path derivative's variance vanishes (STL) while
    # the total derivative keeps the score term's.
    problem = DecoderProblem(NUM_DRAWS, loc=0.83, scale=0.52)
    ours, reference, _ = _losses(problem, tve.kl_reverse, 1)
    ours_var = [g.var() for g in per_draw_gradients(ours, problem.variables[:2])]
    ref_var = [g.var() for g in per_draw_gradients(reference, problem.variables[:2])]
    assert all(a < 0.1 * b for a, b in zip(ours_var, ref_var, strict=True))


def test_check_catches_tfp_decoder_bias_at_k_gt_1():
    # tfp.vi gives theta squared weights at K > 1: the same check must fail.
    problem = DecoderProblem(NUM_DRAWS)
    _, reference, tfp_version = _losses(problem, tve.kl_reverse, 4)
    z = _paired_z_scores(problem, tfp_version, reference)
    assert abs(z[2]) > 10 * Z_TOLERANCE, z
    assert np.all(np.abs(z[:2]) < Z_TOLERANCE), z  # its phi gradient is right here


def test_check_catches_tfp_kl_forward_bias_at_k_1():
    problem = DecoderProblem(NUM_DRAWS)
    _, reference, tfp_version = _losses(problem, tve.kl_forward, 1)
    z = _paired_z_scores(problem, tfp_version, reference)
    assert np.max(np.abs(z[:2])) > 2 * Z_TOLERANCE, z


def _two_evaluation_reference(problem, discrepancy_fn, importance_sample_size, seed):
    """The generalized DReG formula (docs/estimators.md) written naively: the target evaluated twice.

    One evaluation at the live sample with theta stopped carries the phi
    coefficient; one at the stopped sample carries theta's. The library's
    one-evaluation version must give the same gradient on the same draws.
    """
    sample_seed, _ = tfp.random.split_seed(seed, 2)
    z, _ = problem.surrogate.experimental_sample_and_log_prob(
        [importance_sample_size], seed=sample_seed
    )
    stopped_q = problem.stopped_surrogate()
    theta = problem.theta
    log_p_phi = tfp.distributions.Normal(0.0, tf.ones_like(z)).log_prob(z) + (
        tfp.distributions.Normal(tf.stop_gradient(theta) * z, 0.8).log_prob(
            tf.constant(1.5, z.dtype)
        )
    )
    log_w = log_p_phi - stopped_q.log_prob(z)  # [K, B]
    log_p_theta = problem.target_log_prob(tf.stop_gradient(z))
    log_mean = tf.reduce_logsumexp(log_w, axis=0) - np.log(importance_sample_size)
    f1, f2 = tve.csiszar.discrepancy_derivatives(discrepancy_fn, log_mean)
    wt = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
    phi_part = tf.reduce_sum(tf.stop_gradient((f1 - f2) * wt**2) * log_w, axis=0)
    theta_part = tf.reduce_sum(tf.stop_gradient(f1 * wt) * log_p_theta, axis=0)
    return phi_part + theta_part


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_one_target_evaluation_equals_two_evaluation_formula(mode, dtype):
    problem = DecoderProblem(64, dtype=dtype)
    seed = (3, 5)
    ours, _, _ = _losses(problem, tve.kl_forward, 3, seed=seed)

    def grads(loss_fn):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loss_fn())
        return tape.gradient(loss, problem.variables)

    def both():
        reference = functools.partial(
            _two_evaluation_reference, problem, tve.kl_forward, 3, seed
        )
        return grads(ours), grads(reference)

    if mode != "eager":
        both = tf.function(both, jit_compile=(mode == "xla"))
    got, expected = both()
    rtol = 1e-4 if dtype == tf.float32 else 1e-9
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)


def test_gradient_outside_a_compiled_loss():
    # The loss runs in a tf.function, the tape is outside: the deferred
    # gradient scale must still reach the function's backward pass.
    problem = DecoderProblem(64)
    ours, _, _ = _losses(problem, tve.kl_forward, 3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ours())
    expected = tape.gradient(loss, problem.variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.function(ours)())
    got = tape.gradient(loss, problem.variables)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-9)


ALL_DISCREPANCIES = {
    **DISCREPANCIES,
    "arithmetic_geometric": tve.arithmetic_geometric,
    "squared_hellinger": tve.squared_hellinger,
    "triangular": tve.triangular,
    "jeffreys": tve.jeffreys,
    "modified_gan": tve.modified_gan,
    "t_power_0.5": functools.partial(tve.t_power, t=0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("importance_sample_size", [1, 2, 8])
@pytest.mark.parametrize("discrepancy", sorted(ALL_DISCREPANCIES))
def test_unbiased_for_every_smooth_discrepancy_large_sample(
    discrepancy, importance_sample_size
):
    # 200,000 paired draws: about 3x smaller standard errors than the fast
    # test, over every smooth Csiszar function of tfp.vi.
    problem = DecoderProblem(200_000)
    ours, reference, _ = _losses(
        problem, ALL_DISCREPANCIES[discrepancy], importance_sample_size
    )
    z = _paired_z_scores(problem, ours, reference)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.parametrize("importance_sample_size", [1, 3])
def test_score_weight_endpoints_reproduce_both_estimators(importance_sample_size):
    problem = DecoderProblem(256)

    def grads(estimator):
        return per_draw_gradients(
            variational_loss(
                problem, estimator, importance_sample_size, tve.kl_forward, (2, 3)
            ),
            problem.variables,
        )

    total = grads(GE.REPARAMETERIZATION)
    path = grads(GE.DOUBLY_REPARAMETERIZED)
    for c, expected in ((0.0, total), (1.0, path)):
        got = grads(estimators.DoublyReparameterized(score_weight=c))
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_partial_score_weight_is_unbiased():
    problem = DecoderProblem(NUM_DRAWS)
    ours = variational_loss(
        problem, estimators.DoublyReparameterized(score_weight=0.4), 4, tve.kl_forward
    )
    reference = variational_loss(problem, GE.REPARAMETERIZATION, 4, tve.kl_forward)
    z = _paired_z_scores(problem, ours, reference)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.parametrize(
    "score_weight,error", [(1.5, ValueError), (-0.1, ValueError), ("1", TypeError)]
)
@mode_parameter
def test_score_weight_must_be_in_unit_interval(score_weight, error, mode):
    assert_raises(
        mode,
        lambda: estimators.DoublyReparameterized(score_weight=score_weight),
        error,
        "score_weight",
    )
