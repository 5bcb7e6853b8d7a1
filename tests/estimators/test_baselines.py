"""Score-function baselines: unbiased, and the variance drops they promise.

Variance comparisons run both estimators on the same draws (same seed, same
problem) in the same run. Unbiasedness tolerances are in standard errors
(see stat_helpers).
"""

import numpy as np
import pytest
import tensorflow as tf
from modes import assert_raises, mode_parameter
from stat_helpers import (
    Z_TOLERANCE,
    DecoderProblem,
    closed_form_z_scores,
    per_draw_gradients,
)

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

NUM_DRAWS = 20_000
LOG_EVIDENCE = -1.8253  # log N(1.5; 0, 1.3^2 + 0.8^2) for DecoderProblem


def _loss(problem, estimator, sample_size=16, offset=0.0, seed=(1, 2)):
    def loss():
        return tve.monte_carlo_variational_loss(
            lambda z: problem.target_log_prob(z) + offset,
            problem.surrogate,
            sample_size=sample_size,
            gradient_estimator=estimator,
            seed=seed,
        )

    return loss


def _variances(problem, estimator, offset):
    phi = problem.variables[:2]
    return np.array(
        [
            g.var()
            for g in per_draw_gradients(_loss(problem, estimator, offset=offset), phi)
        ]
    )


def test_leave_one_out_cuts_variance_tenfold_on_unnormalized_target():
    # Log evidence about -20, as for a real log joint: without a baseline the
    # offset multiplies every score.
    problem = DecoderProblem(NUM_DRAWS)
    offset = -20.0 - LOG_EVIDENCE
    plain = _variances(problem, estimators.ScoreFunction(), offset)
    loo = _variances(
        problem, estimators.ScoreFunction(baseline="leave_one_out"), offset
    )
    print("variance ratio (plain / leave-one-out):", plain / loo)
    assert np.all(plain / loo >= 10.0), plain / loo


def test_leave_one_out_does_not_increase_variance_on_normalized_target():
    problem = DecoderProblem(NUM_DRAWS)
    phi = problem.variables[:2]
    plain = per_draw_gradients(
        _loss(problem, estimators.ScoreFunction(), offset=-LOG_EVIDENCE), phi
    )
    loo = per_draw_gradients(
        _loss(problem, estimators.ScoreFunction("leave_one_out"), offset=-LOG_EVIDENCE),
        phi,
    )
    for a, b in zip(plain, loo, strict=True):
        # Paired test on squared deviations: increase beyond Z_TOLERANCE
        # standard errors fails.
        d = (b - b.mean()) ** 2 - (a - a.mean()) ** 2
        assert d.mean() < Z_TOLERANCE * d.std(ddof=1) / np.sqrt(d.size), (
            a.var(),
            b.var(),
        )


@pytest.mark.parametrize(
    "baseline", [None, "leave_one_out", "moving_average", "callable"]
)
def test_score_function_with_baseline_is_unbiased(baseline):
    problem = DecoderProblem(NUM_DRAWS)
    if baseline == "callable":
        b = tf.Variable(3.0, dtype=tf.float64)
        baseline = lambda: b  # noqa: E731
    estimator = estimators.ScoreFunction(baseline=baseline)
    if baseline == "moving_average":  # let the average warm up first
        for i in range(5):
            _loss(problem, estimator, sample_size=4, seed=(9, i))()
    draws = per_draw_gradients(
        _loss(problem, estimator, sample_size=4), problem.variables
    )
    z = closed_form_z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_moving_average_keeps_state_across_calls():
    problem = DecoderProblem(8)
    estimator = estimators.ScoreFunction(baseline="moving_average", decay=0.5)
    values = [
        float(tf.reduce_mean(_loss(problem, estimator, seed=(i, 0))()))
        for i in range(3)
    ]
    average = estimator.baseline._average.numpy()
    expected = 0.0
    for v in values:
        expected = 0.5 * expected + 0.5 * v
    np.testing.assert_allclose(average.mean(), expected, rtol=1e-6)
    assert estimator.baseline._steps.numpy() == 3


def test_callable_baseline_is_trained_towards_the_loss():
    problem = DecoderProblem(1)
    b = tf.Variable(0.0, dtype=tf.float64)
    estimator = estimators.ScoreFunction(baseline=lambda: b)
    optimizer = tf.keras.optimizers.SGD(0.1)
    for i in range(200):
        with tf.GradientTape() as tape:
            loss = _loss(problem, estimator, sample_size=8, seed=(i, 1))()
        optimizer.apply_gradients([(tape.gradient(loss, b), b)])
    exact = float(problem.negative_elbo()[0])
    assert abs(b.numpy() - exact) < 0.2 * abs(exact), (b.numpy(), exact)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(baseline="mean"), ValueError),
        (dict(baseline=3), TypeError),
        (dict(baseline="moving_average", decay=1.0), ValueError),
        (dict(baseline="moving_average", decay="0.9"), TypeError),
    ],
)
@mode_parameter
def test_bad_baseline_arguments(kwargs, error, mode):
    assert_raises(
        mode, lambda: estimators.ScoreFunction(**kwargs), error, "baseline|decay"
    )


@mode_parameter
def test_leave_one_out_needs_two_draws(mode):
    problem = DecoderProblem(4)
    loss = _loss(problem, estimators.ScoreFunction("leave_one_out"), sample_size=1)
    assert_raises(mode, loss, ValueError, "sample_size")
