"""Pathfinder's inverse-Hessian factors against a dense BFGS recomputation.

The compact representation `diag(alpha) + beta gamma beta^T` of
`pathfinding/inverse_hessian.py` must equal the inverse Hessian that the BFGS
update builds, pair by pair, from `H_0 = diag(alpha)` and the same history
(Nocedal and Wright, eq. 6.17):

    H <- (I - rho s z^T)^T H (I - rho s z^T) + rho s s^T,   rho = 1 / (s^T z)

and its square root `A` (Alg. 4) must satisfy `A A^T = H`. Exact linear
algebra in float64: the tolerances are rounding (1e-10 relative).
"""

import numpy as np
import pytest
import tensorflow as tf

from tfp_vi_estimators.pathfinding import inverse_hessian as ih

DIM = 7


def _dense_bfgs(alpha, pairs):
    h = np.diag(alpha)
    for s, z in pairs:
        rho = 1.0 / (s @ z)
        v = np.eye(len(s)) - rho * np.outer(z, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def _history(num_pairs, history_size, seed=0):
    """Pairs from a quadratic with a random SPD Hessian, pushed as the
    optimizer pushes them; returns the state after each push."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(DIM, DIM))
    hessian = a @ a.T + np.eye(DIM)
    alpha = tf.ones([2, DIM], tf.float64)
    s_hist = tf.zeros([2, history_size, DIM], tf.float64)
    z_hist = tf.zeros([2, history_size, DIM], tf.float64)
    valid = tf.zeros([2, history_size], tf.bool)
    states = []
    for _ in range(num_pairs):
        s = rng.normal(size=(2, DIM))
        z = s @ hessian + 0.05 * rng.normal(size=(2, DIM))
        s, z = tf.constant(s), tf.constant(z)
        accepted = ih.accept_pair(s, z)
        alpha = ih.update_diagonal(alpha, s, z, accepted)
        s_hist, _ = ih.push_pair(s_hist, valid, s, accepted)
        z_hist, valid = ih.push_pair(z_hist, valid, z, accepted)
        states.append((alpha, s_hist, z_hist, valid))
    return states


@pytest.mark.parametrize("history_size", [3, 5])
def test_compact_factors_equal_the_dense_bfgs_update(history_size):
    for alpha, s_hist, z_hist, valid in _history(6, history_size):
        factors = ih.inverse_hessian_factors(alpha, s_hist, z_hist, valid)
        for b in range(2):
            pairs = [
                (s_hist[b, i].numpy(), z_hist[b, i].numpy())
                for i in range(history_size)
                if valid[b, i]
            ]
            dense = _dense_bfgs(alpha[b].numpy(), pairs)
            compact = (
                np.diag(alpha[b].numpy())
                + factors.beta[b].numpy()
                @ factors.gamma[b].numpy()
                @ factors.beta[b].numpy().T
            )
            np.testing.assert_allclose(compact, dense, rtol=1e-10, atol=1e-12)
            vector = np.arange(DIM, dtype=np.float64)
            np.testing.assert_allclose(
                factors.matvec(tf.constant(np.stack([vector] * 2)))[b],
                dense @ vector,
                rtol=1e-10,
            )


def test_scale_is_a_square_root_with_its_log_determinant():
    for alpha, s_hist, z_hist, valid in _history(5, 4):
        factors = ih.inverse_hessian_factors(alpha, s_hist, z_hist, valid)
        scale = ih.scale_operator(factors)
        h = np.diag(alpha[0].numpy()) + (
            factors.beta[0].numpy()
            @ factors.gamma[0].numpy()
            @ factors.beta[0].numpy().T
        )
        a = scale.to_dense()[0].numpy()
        np.testing.assert_allclose(a @ a.T, h, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            scale.log_abs_determinant()[0], 0.5 * np.linalg.slogdet(h)[1], rtol=1e-10
        )
        # Diagonal plus rank min(d, 2m), never a dense d x d parameter.
        assert scale.u.shape == [2, DIM, min(DIM, 8)]


def test_empty_history_is_the_diagonal():
    alpha = tf.constant([[1.0, 2.0, 3.0]], tf.float64)
    history = tf.zeros([1, 2, 3], tf.float64)
    factors = ih.inverse_hessian_factors(
        alpha, history, history, tf.zeros([1, 2], tf.bool)
    )
    scale = ih.scale_operator(factors)
    np.testing.assert_allclose(scale.to_dense()[0], np.diag(np.sqrt([1.0, 2.0, 3.0])))


def test_diagonal_update_is_the_secant_in_one_dimension():
    # d = 1: the update must give alpha = s / z (the secant condition).
    alpha = tf.constant([[3.0]], tf.float64)
    s, z = tf.constant([[0.5]], tf.float64), tf.constant([[2.0]], tf.float64)
    updated = ih.update_diagonal(alpha, s, z, ih.accept_pair(s, z))
    np.testing.assert_allclose(updated, [[0.25]], rtol=1e-14)


def test_pairs_without_curvature_are_rejected():
    s = tf.constant([[1.0, 0.0], [0.0, 0.0]], tf.float64)
    z = tf.constant([[-1.0, 0.0], [1.0, 0.0]], tf.float64)  # s^T z <= 0
    accepted = ih.accept_pair(s, z)
    assert not np.any(accepted)
    alpha = tf.ones([2, 2], tf.float64)
    np.testing.assert_array_equal(ih.update_diagonal(alpha, s, z, accepted), alpha)
    history = tf.zeros([2, 3, 2], tf.float64)
    pushed, valid = ih.push_pair(history, tf.zeros([2, 3], tf.bool), s, accepted)
    np.testing.assert_array_equal(pushed, history)
    assert not np.any(valid)
