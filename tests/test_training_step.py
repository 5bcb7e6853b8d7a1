"""One training step in every driver: the estimator's state is carried alike.

The adaptive score weight (`DoublyReparameterized(score_weight='adaptive')`)
is the estimator with state. Two observable facts pin its behaviour in each
driver:

- At q = p (the target is the surrogate at its own parameters) and fixed
  parameters (a zero learning rate), the path derivative is zero at every
  draw, so after its first step, which uses c = 0 (no moments yet), the
  moments give c = 1 and the gradient is zero up to float32 rounding. A
  driver that did not carry the state would keep returning the total
  derivative, of order one.
- The Keras model's fit is, step for step, the hand-written loop through
  `value_and_gradients` with the model's seeds (same process, same ops: the
  same float32 values).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators, optimizers
from tfp_vi_estimators.keras_models import SurrogatePosteriorModel
from tfp_vi_estimators.loss_config import LossConfig, Problem, check_arguments
from tfp_vi_estimators.training_step import StepState, TrainingStep
from tfp_vi_estimators.variational_loss import evaluate

tfd, tfb = tfp.distributions, tfp.bijectors

LOC, SCALE = [0.5, -1.0, 2.0], [0.8, 1.5, 0.3]
TARGET = tfd.MultivariateNormalDiag(LOC, SCALE)
# Rounding of the zero path gradient: its terms are of order |z| / s^2 <= 40.
ZERO_ATOL = 1e-4


def _surrogate_at_target():
    loc = tf.Variable(LOC, name="loc")
    scale = tfp.util.TransformedVariable(SCALE, tfb.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale)


def _adaptive():
    return estimators.DoublyReparameterized(score_weight="adaptive")


def _trace_gradients(traceable):
    return traceable.gradients


def _assert_total_then_zero(gradients):
    """Step 0's gradient is the total derivative; later ones vanish."""
    first = np.concatenate([np.ravel(g[0]) for g in gradients])
    later = np.concatenate([np.ravel(g[1:]) for g in gradients])
    assert np.max(np.abs(first)) > 0.1, first
    np.testing.assert_allclose(later, 0.0, atol=ZERO_ATOL)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_surrogate_posterior_carries_the_weight(jit_compile):
    gradients = tve.fit_surrogate_posterior(
        TARGET.log_prob,
        _surrogate_at_target(),
        keras.optimizers.SGD(0.0),
        5,
        sample_size=2,
        gradient_estimator=_adaptive(),
        trace_fn=_trace_gradients,
        jit_compile=jit_compile,
        seed=(1, 2),
        progress=False,
    )
    _assert_total_then_zero(gradients)


def test_fit_surrogate_posterior_stateless_carries_the_weight():
    def build(loc, raw_scale):
        return tfd.MultivariateNormalDiag(loc, tf.nn.softplus(raw_scale))

    raw_scale = tfb.Softplus().inverse(tf.constant(SCALE))
    _, gradients = tve.fit_surrogate_posterior_stateless(
        TARGET.log_prob,
        build,
        [tf.constant(LOC), raw_scale],
        tve.optimizers.sgd(0.0),
        5,
        sample_size=2,
        gradient_estimator=_adaptive(),
        trace_fn=_trace_gradients,
        seed=(1, 2),
    )
    _assert_total_then_zero(gradients)


def test_value_and_gradients_carries_the_weight():
    q = _surrogate_at_target()
    state, rows = None, []
    for step in range(4):
        _, grads, state = tve.value_and_gradients(
            TARGET.log_prob,
            q,
            q.trainable_variables,
            state,
            sample_size=2,
            gradient_estimator=_adaptive(),
            seed=(3, step),
        )
        rows.append(grads)
    _assert_total_then_zero([np.stack(g) for g in zip(*rows, strict=True)])


def test_checkpointed_fit_resumes_with_the_weight(tmp_path):
    def fit(num_steps, checkpoint_dir):
        q = _surrogate_for_resume()
        trace = tve.fit_surrogate_posterior(
            TARGET.log_prob,
            q,
            keras.optimizers.Adam(0.05),
            num_steps,
            sample_size=2,
            gradient_estimator=_adaptive(),
            seed=(4, 5),
            progress=False,
            checkpoint_dir=checkpoint_dir,
        )
        return np.asarray(trace), [np.asarray(v) for v in q.trainable_variables]

    expected, expected_values = fit(20, None)
    directory = str(tmp_path / "fit")
    fit(10, directory)
    got, values = fit(20, directory)  # restores step 10, moments included
    np.testing.assert_array_equal(got, expected)
    for v, e in zip(values, expected_values, strict=True):
        np.testing.assert_array_equal(v, e)


def _surrogate_for_resume():
    loc = tf.Variable([0.0, 0.0, 0.0], name="loc")
    scale = tfp.util.TransformedVariable([1.0, 1.0, 1.0], tfb.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale)


def test_keras_fit_is_the_value_and_gradients_loop():
    steps = 12
    q = _surrogate_for_resume()
    model = SurrogatePosteriorModel(
        TARGET.log_prob, q, sample_size=2, gradient_estimator=_adaptive(), seed=7
    )
    model.compile(keras.optimizers.Adam(0.05))
    model.fit(epochs=1, steps_per_epoch=steps, verbose=0)

    reference = _surrogate_for_resume()
    variables = list(reference.trainable_variables)
    optimizer = keras.optimizers.Adam(0.05)
    estimator, state = _adaptive(), None

    @tf.function(autograph=False)
    def step(t, state):
        seed = tf.stack([tf.constant(7), t])  # one replica: not folded
        _, grads, state = tve.value_and_gradients(
            TARGET.log_prob,
            reference,
            variables,
            state,
            sample_size=2,
            gradient_estimator=estimator,
            seed=seed,
        )
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return state

    state = estimator.initial_state([tf.convert_to_tensor(v) for v in variables])
    for t in range(steps):
        state = step(tf.constant(t), state)
    for got, want in zip(q.trainable_variables, variables, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_fit_inside_tf_function_refuses_a_learning_estimator():
    @tf.function
    def fit():
        return tve.fit_surrogate_posterior(
            TARGET.log_prob,
            _surrogate_at_target(),
            keras.optimizers.SGD(0.0),
            2,
            gradient_estimator=_adaptive(),
        )

    with pytest.raises(ValueError, match="learns from step to step"):
        fit()


def test_value_and_gradients_needs_a_list_of_variables():
    q = _surrogate_at_target()
    with pytest.raises(TypeError, match="`variables`"):
        tve.value_and_gradients(TARGET.log_prob, q, q.trainable_variables[0])
    with pytest.raises(TypeError, match="`variables`"):
        tve.value_and_gradients(TARGET.log_prob, q, [])


def test_fit_surrogate_posterior_stateless_takes_python_numbers():
    # tfp.vi converts Python numbers among the initial parameters to tensors
    # (`tfp.math.value_and_gradient`); the same process computes both sides.
    def build(loc, raw_scale):
        return tfd.Normal(loc, tf.nn.softplus(raw_scale))

    def fit(fit_fn):
        return fit_fn(
            tfd.Normal(1.0, 2.0).log_prob,
            build,
            (0.0, 0.5),
            tve.optimizers.adam(0.1),
            4,
            seed=(3, 4),
        )

    ours_parameters, ours_losses = fit(tve.fit_surrogate_posterior_stateless)
    theirs_parameters, theirs_losses = fit(tfp.vi.fit_surrogate_posterior_stateless)
    np.testing.assert_array_equal(ours_losses, theirs_losses)
    np.testing.assert_array_equal(ours_parameters, theirs_parameters)


# `TrainingStep` itself, as a hand-written loop uses it.


def _loss_fn(config):
    return lambda parameters, seed, batch: evaluate(config, seed)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_training_step_on_variables_is_one_sgd_step_of_the_loss(mode):
    q = _surrogate_at_target()
    variables = list(q.trainable_variables)
    config = check_arguments(TARGET.log_prob, _shifted(q), sample_size=4)
    start = [v.numpy() for v in variables]
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            TARGET.log_prob, _shifted(q), sample_size=4, seed=(1, 2)
        )
    want = [
        s - 0.1 * g.numpy()
        for s, g in zip(start, tape.gradient(loss, variables), strict=True)
    ]
    step = TrainingStep(_loss_fn(config), keras.optimizers.SGD(0.1), variables)
    call = step if mode == "eager" else tf.function(step, autograph=False)
    state, result = call(step.initial_state(config.estimator), (1, 2))
    # Same process, same ops: the same float32 values up to op fusion.
    np.testing.assert_allclose(result.loss, loss, rtol=1e-6)
    for v, w in zip(variables, want, strict=True):
        np.testing.assert_allclose(v.numpy(), w, rtol=1e-6, atol=1e-7)
    assert bool(result.finite)


def test_training_step_skips_a_non_finite_step():
    q = _surrogate_at_target()
    variables = list(q.trainable_variables)
    config = check_arguments(
        lambda z: TARGET.log_prob(z) + np.float32(np.nan), q, sample_size=2
    )
    start = [v.numpy() for v in variables]
    step = TrainingStep(
        _loss_fn(config), keras.optimizers.SGD(0.1), variables, skip_non_finite=True
    )
    _, result = step(step.initial_state(config.estimator), (3, 4))
    assert not bool(result.finite)
    for v, s in zip(variables, start, strict=True):
        np.testing.assert_array_equal(v.numpy(), s)


def test_training_step_on_explicit_parameters_is_one_sgd_step():
    def build(loc):
        return tfd.MultivariateNormalDiag(loc, SCALE)

    start = tf.constant([0.0, 0.0, 0.0])
    config = check_arguments(TARGET.log_prob, build(start), sample_size=4)

    def loss_fn(parameters, seed, batch):
        problem = Problem(TARGET.log_prob, build(*parameters))
        return evaluate(LossConfig(problem, config.options), seed)

    step = TrainingStep(loss_fn, optimizers.sgd(0.1))
    state = step.initial_state(config.estimator, [start])
    state, result = step(state, (5, 6))
    with tf.GradientTape() as tape:
        tape.watch(start)
        loss = tve.monte_carlo_variational_loss(
            TARGET.log_prob, build(start), sample_size=4, seed=(5, 6)
        )
    (grad,) = tape.gradient(loss, [start])
    assert isinstance(state, StepState)
    np.testing.assert_allclose(state.parameters[0], start - 0.1 * grad, rtol=1e-6)
    np.testing.assert_allclose(result.loss, loss, rtol=1e-6)


def _shifted(q):
    """The surrogate moved off the target, so the gradient is not zero."""
    return tfd.TransformedDistribution(q, tfb.Shift([0.3, 0.3, 0.3]))
