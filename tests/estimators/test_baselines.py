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


def _trained(problem, estimator, seeds, sample_size=4, offset=0.0):
    """Per-draw gradients of the last training step of `seeds`, and its state.

    The moving average learns only in training steps
    (`value_and_gradients` carries its state), so the steps before the last
    warm it up.
    """
    state = None
    for seed in seeds:
        _, grads, state = tve.value_and_gradients(
            lambda z: problem.target_log_prob(z) + offset,
            problem.surrogate,
            problem.variables,
            state,
            sample_size=sample_size,
            gradient_estimator=estimator,
            seed=seed,
        )
    return [g.numpy() for g in grads], state


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
    if baseline == "moving_average":  # five training steps warm the average up
        seeds = [(9, i) for i in range(5)] + [(1, 2)]
        draws, state = _trained(problem, estimator, seeds)
        assert float(estimator.baseline.value(state)) != 0.0
    else:
        draws = per_draw_gradients(
            _loss(problem, estimator, sample_size=4), problem.variables
        )
    z = closed_form_z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_moving_average_state_follows_the_training_steps():
    problem = DecoderProblem(8)
    estimator = estimators.ScoreFunction(baseline="moving_average", decay=0.5)
    state, expected = None, 0.0
    for i in range(3):
        loss, _, state = tve.value_and_gradients(
            problem.target_log_prob,
            problem.surrogate,
            problem.variables,
            state,
            sample_size=16,
            gradient_estimator=estimator,
            seed=(i, 0),
        )
        # The loss's value is what a plain evaluation gives for the same seed.
        np.testing.assert_array_equal(loss, _loss(problem, estimator, seed=(i, 0))())
        expected = 0.5 * expected + 0.5 * float(tf.reduce_mean(loss))
    np.testing.assert_allclose(state["average"], expected, rtol=1e-12)
    assert float(state["steps"]) == 3


def test_moving_average_cuts_variance_on_unnormalized_target():
    # As for leave-one-out: log evidence about -20. The average of earlier
    # steps' losses, subtracted in the training step, removes the offset that
    # multiplies every score; both arms see the same draws at the last step.
    problem = DecoderProblem(NUM_DRAWS)
    offset = -20.0 - LOG_EVIDENCE
    seeds = [(9, i) for i in range(20)] + [(1, 2)]
    plain, _ = _trained(problem, estimators.ScoreFunction(), seeds, offset=offset)
    averaged, _ = _trained(
        problem, estimators.ScoreFunction("moving_average"), seeds, offset=offset
    )
    phi = zip(plain[:2], averaged[:2], strict=True)  # loc and log-scale
    ratio = np.array([a.var() / b.var() for a, b in phi])
    print("variance ratio (plain / moving average):", ratio)
    assert np.all(ratio >= 10.0), ratio


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


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_moving_average_step_is_a_fixed_baseline_of_the_earlier_average(mode):
    # A training step subtracts b * grad(score) with b from earlier steps; that
    # is the score-function gradient with the constant baseline b, for a
    # batched loss too (b: one average over draws and batch members). Exact
    # up to rounding: the same draws, two orders of the same operations.
    problem = DecoderProblem(3)
    estimator = estimators.ScoreFunction(baseline="moving_average", decay=0.5)

    def steps():
        state, results = None, []
        for i in range(3):
            loss, grads, state = tve.value_and_gradients(
                problem.target_log_prob,
                problem.surrogate,
                problem.variables,
                state,
                sample_size=4,
                gradient_estimator=estimator,
                seed=(i, 7),
            )
            results.append((loss, grads, estimator.baseline.value(state)))
        return results

    def steps_and_references():
        # In one function: under XLA the draws for a seed may differ from
        # eager ones, so the reference is computed where the steps are.
        results = steps()
        references = []
        for i in (1, 2):
            b = results[i - 1][2]  # the average after the steps before step i
            fixed = estimators.ScoreFunction(baseline=lambda b=b: b)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(
                    _loss(problem, fixed, sample_size=4, seed=(i, 7))()
                )
            references.append(tape.gradient(loss, problem.variables))
        return results, references

    fn = steps_and_references
    if mode != "eager":
        fn = tf.function(fn, jit_compile=mode == "xla")
    results, references = fn()
    for i, expected in zip((1, 2), references, strict=True):
        for got, want in zip(results[i][1], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert float(results[0][2]) != 0.0


def _model_state(model):
    """The Keras model's estimator state (the moving average), as numbers."""
    state = model._estimator_state.read()  # noqa: SLF001 - the state under test
    return {k: float(v) for k, v in state.items()}


def test_only_training_steps_move_the_moving_average():
    # Keras `evaluate` and `test_step`, the diagnostics and a plain loss read
    # no baseline state and write none; `fit` carries it from step to step.
    import keras

    from tfp_vi_estimators import diagnostics
    from tfp_vi_estimators.keras_models import SurrogatePosteriorModel

    problem = DecoderProblem(2)
    estimator = estimators.ScoreFunction("moving_average")
    assert not any(
        isinstance(v, tf.Variable) for v in vars(estimator.baseline).values()
    )
    model = SurrogatePosteriorModel(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=4,
        gradient_estimator=estimator,
        seed=3,
    )
    model.compile(keras.optimizers.SGD(1e-3))
    model.fit(epochs=1, steps_per_epoch=3, verbose=0)
    after_fit = _model_state(model)
    assert after_fit["steps"] == 3.0 and after_fit["average"] != 0.0
    model.evaluate(steps=2, verbose=0)
    model.test_step(None)
    diagnostics.compare_estimators(
        problem.target_log_prob,
        problem.surrogate,
        {"moving average": estimator},
        num_draws=4,
        seed=(1, 1),
        sample_size=4,
    )
    _loss(problem, estimator)()
    assert _model_state(model) == after_fit
    model.fit(epochs=1, steps_per_epoch=2, verbose=0)
    assert _model_state(model)["steps"] == 5.0
