"""Estimators are pure tensor maths: per-draw losses from plain log-density tensors.

No surrogate, no sampler: each estimator gets a `LogDensities` of constants
(`[S, K] = [2, 3]`) and its value and gradients with respect to those tensors
are compared with the formulas in the estimators' docstrings, computed here in
NumPy (float64, so the tolerance is rounding only).
"""

import numpy as np
import pytest
import tensorflow as tf

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimators.plan import Density, LogDensities, PathGradient

LOG_P = np.array([[-1.0, -2.5, -0.3], [-4.0, -1.2, -0.7]])
LOG_Q = np.array([[-0.9, -1.7, -1.1], [-2.2, -0.6, -1.4]])
RTOL = 1e-12


def _reference(log_p, log_q):
    log_w = log_p - log_q
    log_mean = np.log(np.mean(np.exp(log_w), axis=1))
    weights = np.exp(log_w - log_w.max(1, keepdims=True))
    return log_mean, weights / weights.sum(1, keepdims=True)


def _grads(estimator, discrepancy_fn, **densities):
    tensors = {k: tf.constant(v) for k, v in densities.items()}
    with tf.GradientTape() as tape:
        tape.watch(list(tensors.values()))
        loss = estimator.per_draw_loss(LogDensities(**tensors), discrepancy_fn)
        total = tf.reduce_sum(loss)
    grads = tape.gradient(total, tensors)
    return loss.numpy(), {k: g.numpy() for k, g in grads.items()}


def test_reparameterization_is_the_total_derivative_of_f_of_l():
    log_mean, weights = _reference(LOG_P, LOG_Q)
    value, grads = _grads(
        estimators.Reparameterization(), tve.kl_reverse, target=LOG_P, surrogate=LOG_Q
    )
    np.testing.assert_allclose(value, -log_mean, rtol=RTOL)
    np.testing.assert_allclose(grads["target"], -weights, rtol=RTOL)
    np.testing.assert_allclose(grads["surrogate"], weights, rtol=RTOL)


def test_score_function_adds_the_learning_signal_times_the_score():
    log_mean, weights = _reference(LOG_P, LOG_Q)
    value, grads = _grads(
        estimators.ScoreFunction(), tve.kl_reverse, target=LOG_P, surrogate=LOG_Q
    )
    np.testing.assert_allclose(value, -log_mean, rtol=RTOL)
    # d/d log q_k of f(L) + stop(f(L)) sum_k log q_k: f'(L)(-wt_k) + f(L).
    expected = weights + (-log_mean)[:, None]
    np.testing.assert_allclose(grads["surrogate"], expected, rtol=RTOL)


def test_vimco_uses_leave_one_out_baselines_per_particle():
    log_mean, _ = _reference(LOG_P, LOG_Q)
    log_w = LOG_P - LOG_Q
    value, grads = _grads(
        estimators.VIMCO(), tve.kl_reverse, target=LOG_P, surrogate=LOG_Q
    )
    np.testing.assert_allclose(value, -log_mean, rtol=RTOL)
    # The surrogate's gradient is the score term only (with_gradient_of f):
    # d/d log q_k = f(L) - f(L_{-k}) plus the direct term of f(L) = -L.
    k = log_w.shape[1]
    swap = np.empty_like(log_w)
    for j in range(k):
        replaced = log_w.copy()
        replaced[:, j] = np.delete(log_w, j, axis=1).mean(1)
        swap[:, j] = np.log(np.mean(np.exp(replaced), axis=1))
    _, weights = _reference(LOG_P, LOG_Q)
    expected = (-log_mean)[:, None] - (-swap) + weights
    np.testing.assert_allclose(grads["surrogate"], expected, rtol=1e-10)


@pytest.mark.parametrize("discrepancy", ["kl_reverse", "kl_forward"])
def test_doubly_reparameterized_sends_the_path_scale_it_documents(discrepancy):
    # The multiplier reaches the samples as the gradient of the scale port.
    f = getattr(tve, discrepancy)
    log_mean, weights = _reference(LOG_P, LOG_Q)
    estimator = estimators.DoublyReparameterized()
    assert estimator.plan.path_gradient is PathGradient.SCALED
    assert estimator.plan.densities == {Density.STOPPED_PARAMETERS}
    port = tf.zeros(LOG_P.shape, tf.float64)
    densities = LogDensities(
        target=tf.constant(LOG_P),
        stopped_parameters=tf.constant(LOG_Q),
        scale_port=port,
    )
    with tf.GradientTape() as tape:
        tape.watch(port)
        value = estimator.per_draw_loss(densities, f)
        total = 3.0 * tf.reduce_sum(value)
    np.testing.assert_allclose(value, f(tf.constant(log_mean)).numpy(), rtol=RTOL)
    f1, f2 = tve.csiszar.discrepancy_derivatives(f, tf.constant(log_mean))
    ratio = np.nan_to_num(f2.numpy() / f1.numpy())[:, None]
    # A multiplier, not a linear term: the loss's own scale (3) does not enter.
    np.testing.assert_allclose(
        tape.gradient(total, port), weights * (1 - ratio), rtol=RTOL
    )


def test_mixture_sticking_the_landing_weights_components_by_live_weights():
    log_pi = np.log(np.array([[0.2, 0.5, 0.3]]))
    value, grads = _grads(
        estimators.MixtureStickingTheLanding(),
        tve.kl_reverse,
        target=LOG_P,
        stopped_parameters=LOG_Q,
        component_log_weights=log_pi,
    )
    np.testing.assert_allclose(
        value, np.sum(np.exp(log_pi) * (LOG_Q - LOG_P), axis=1), rtol=RTOL
    )
    np.testing.assert_allclose(
        grads["component_log_weights"],
        np.sum(np.exp(log_pi) * (LOG_Q - LOG_P), axis=0, keepdims=True),
        rtol=RTOL,
    )


def test_moving_average_baseline_holds_no_state_and_reads_none_in_the_loss():
    # The average is the estimator's state (initial_state / combine); the loss
    # reads none of it: its baseline is 0, the value before the first step.
    estimator = estimators.ScoreFunction(baseline="moving_average")
    assert estimator.carries_state
    densities = LogDensities(target=tf.constant(LOG_P), surrogate=tf.constant(LOG_Q))
    with tf.GradientTape() as tape:
        tape.watch(densities.surrogate)
        loss = estimator.per_draw_loss(densities, tve.kl_reverse)
    plain = estimators.ScoreFunction()
    with tf.GradientTape() as tape_plain:
        tape_plain.watch(densities.surrogate)
        loss_plain = plain.per_draw_loss(densities, tve.kl_reverse)
    np.testing.assert_array_equal(loss, loss_plain)
    np.testing.assert_array_equal(
        tape.gradient(loss, densities.surrogate),
        tape_plain.gradient(loss_plain, densities.surrogate),
    )
    state = estimator.initial_state([])
    assert float(estimator.baseline.value(state)) == 0.0
    for step, mean in enumerate([2.0, 4.0]):
        _, state = estimator.combine(
            {"gradients": [], "score": [], "mean": tf.constant(mean)}, state
        )
        assert float(state["steps"]) == step + 1
    # m = 0.1 * 2 = 0.2, then 0.9 * 0.2 + 0.1 * 4 = 0.58; b = m / (1 - 0.9^2).
    np.testing.assert_allclose(estimator.baseline.value(state), 0.58 / 0.19)
