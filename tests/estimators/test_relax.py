"""RELAX: unbiased for any control variate; the control variate's gradient is
that of the squared gradient; training it lowers the variance.

Mean gradients are compared with the gradient of the enumerated (or, with a
Normal parent, Gauss-Hermite integrated) negative ELBO within `Z_TOLERANCE`
standard errors (4.5, see `stat_helpers`).
"""

import numpy as np
import pytest
import tensorflow as tf
from discrete_problems import (
    F64,
    BernoulliProblem,
    CategoricalProblem,
    JointProblem,
    ParentProblem,
)
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

NUM_DRAWS = 20_000


def _control_variate(num_inputs, seed=3):
    """A control variate far from zero, so every RELAX term is exercised."""
    control = estimators.MLPControlVariate(num_inputs, 16, dtype=F64, seed=seed)
    control.output_weights.assign(
        tf.random.stateless_normal([16], [seed, 1], dtype=F64)
    )
    control.output_bias.assign(tf.constant(-3.0, F64))
    return control


def _loss(problem, estimator, sample_size=1, importance_sample_size=1, seed=(5, 6)):
    return lambda: tve.monte_carlo_variational_loss(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        gradient_estimator=estimator,
        seed=seed,
    )


def _z_scores(problem, draws, importance_sample_size=1):
    exact = per_draw_gradients(
        lambda: problem.negative_bound(importance_sample_size), problem.variables
    )
    scores = []
    for d, e in zip(draws, exact, strict=True):
        d, e = d.reshape(len(d), -1), e.reshape(len(e), -1)
        scores.extend(z_scores(d[:, j], e[0, j]) for j in range(d.shape[1]))
    return np.array(scores)


@pytest.mark.parametrize(
    "make_problem, num_inputs, sample_size, importance_sample_size",
    [
        (BernoulliProblem, 3, 1, 1),
        (CategoricalProblem, 6, 1, 1),
        pytest.param(
            lambda n: CategoricalProblem(n, "one_hot"), 6, 1, 1, marks=pytest.mark.slow
        ),
        pytest.param(BernoulliProblem, 3, 2, 2, marks=pytest.mark.slow),
        (JointProblem, 2, 1, 1),
        pytest.param(ParentProblem, 1, 1, 1, marks=pytest.mark.slow),
    ],
    ids=["bernoulli", "categorical", "one_hot", "bernoulli_iwae", "joint", "parent"],
)
def test_mean_gradient_is_the_exact_gradient_for_a_fixed_control_variate(
    make_problem, num_inputs, sample_size, importance_sample_size
):
    problem = make_problem(NUM_DRAWS)
    relax = estimators.RELAX(_control_variate(num_inputs))
    draws = per_draw_gradients(
        _loss(problem, relax, sample_size, importance_sample_size), problem.variables
    )
    z = _z_scores(problem, draws, importance_sample_size)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def _squared_logits_gradient(problem, relax):
    """1/2 sum_b |d loss_b / d logits_b|^2: with S = 1 and the logits as the
    parameters, d loss_b / d logits_b is draw b's gradient G_b."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_loss(problem, relax)())
    return 0.5 * tf.reduce_sum(tape.gradient(loss, problem.logits) ** 2)


def test_control_variate_gets_the_gradient_of_the_squared_gradient():
    problem = BernoulliProblem(50)
    relax = estimators.RELAX(_control_variate(3), variance_weight=1.0)
    variables = relax.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_loss(problem, relax)())
    gradients = tape.gradient(loss, variables)
    directions = [
        tf.random.stateless_normal(v.shape, [7, i], dtype=F64)
        for i, v in enumerate(variables)
    ]
    along = sum(
        tf.reduce_sum(g * d) for g, d in zip(gradients, directions, strict=True)
    )
    step = 1e-5
    values = []
    for sign in (1.0, -1.0):
        for v, d in zip(variables, directions, strict=True):
            v.assign_add(sign * step * d)
        values.append(_squared_logits_gradient(problem, relax))
        for v, d in zip(variables, directions, strict=True):
            v.assign_sub(sign * step * d)
    finite_difference = (values[0] - values[1]) / (2 * step)
    # Central differences in float64: error O(step^2) and rounding ~1e-11 / step.
    np.testing.assert_allclose(along, finite_difference, rtol=1e-5)


def test_value_is_the_loss_and_the_surrogate_gradient_ignores_the_variance_term():
    problem = BernoulliProblem(3)
    light = estimators.RELAX(_control_variate(3), variance_weight=0.0)
    heavy = estimators.RELAX(light.control_variate, variance_weight=100.0)
    results = []
    for relax in (light, heavy):
        with tf.GradientTape() as tape:
            loss = _loss(problem, relax)()
        results.append((loss.numpy(), tape.gradient(loss, problem.logits).numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


@pytest.mark.slow
def test_fitting_the_control_variate_lowers_the_gradient_variance():
    problem = BernoulliProblem(2_000)
    relax = estimators.RELAX(estimators.MLPControlVariate(3, dtype=F64))
    before = per_draw_gradients(_loss(problem, relax, seed=(1, 1)), [problem.logits])
    tve.fit_surrogate_posterior(
        problem.target_log_prob,
        problem.surrogate,
        optimizer=tf.keras.optimizers.Adam(0.03),
        num_steps=300,
        gradient_estimator=relax,
        trainable_variables=relax.trainable_variables,
        jit_compile=True,
        seed=(4, 2),
    )
    after = per_draw_gradients(_loss(problem, relax, seed=(1, 1)), [problem.logits])
    ratio = before[0].var(0).sum() / after[0].var(0).sum()
    print("gradient variance, untrained / trained control variate:", ratio)
    assert ratio > 2.0


def test_fit_trains_the_control_variate_and_traces_it():
    problem = BernoulliProblem(2)
    control = estimators.MLPControlVariate(3, dtype=F64)
    relax = estimators.RELAX(control)
    start = [v.numpy().copy() for v in relax.trainable_variables]
    trace = tve.fit_surrogate_posterior(
        problem.target_log_prob,
        problem.surrogate,
        optimizer=tf.keras.optimizers.Adam(0.05),
        num_steps=5,
        gradient_estimator=relax,
        trace_fn=lambda t: t.parameters,
        seed=(4, 2),
    )
    traced = {tuple(t.shape[1:]) for t in trace}
    for old, new in zip(start, relax.trainable_variables, strict=True):
        assert not np.array_equal(old, new.numpy())
        assert tuple(new.shape) in traced


@pytest.mark.slow
def test_xla_mean_gradient_is_the_exact_gradient():
    problem = JointProblem(2_000)
    relax = estimators.RELAX(_control_variate(2))
    loss = tf.function(_loss(problem, relax, seed=(2, 3)), jit_compile=True)
    z = _z_scores(problem, per_draw_gradients(loss, problem.variables))
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="control_variate"):
        estimators.RELAX(3)
    with pytest.raises(ValueError, match="temperature"):
        estimators.RELAX(lambda x: x, temperature=0.0)
    with pytest.raises(ValueError, match="variance_weight"):
        estimators.RELAX(lambda x: x, variance_weight=-1.0)
    problem = BernoulliProblem(2)
    wrong_shape = estimators.RELAX(lambda x: x)  # keeps the [D] axis
    with pytest.raises(ValueError, match="must return"):
        _loss(problem, wrong_shape)()


@mode_parameter
def test_straight_through_surrogate_is_refused(mode):
    problem = BernoulliProblem(1, straight_through=True)

    def call():
        return _loss(problem, estimators.RELAX(_control_variate(3)))()

    assert_raises(
        mode,
        call,
        ValueError,
        "RELAX serves .*tfd.Bernoulli.*RelaxedBernoulliStraightThrough",
    )
