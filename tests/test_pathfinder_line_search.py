"""Pathfinder's weak Wolfe line search, on quadratics where everything is exact.

Along a descent direction `d` of `f(x) = x^T A x / 2 - b^T x` the line
minimizer is `t* = -g^T d / d^T A d`, and the secant step of two slopes is
`t*` exactly; the search tries it after its first acceptance unless that
step is within `REFINE` (relative) of it, so the returned step is `t*` to
rounding or within `REFINE` of it. Float64 throughout: the tolerances below
are rounding (1e-10 relative) or the module's own `REFINE`.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfp_vi_estimators.pathfinding import line_search

BATCH, DIM = 3, 5


def _quadratics(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(BATCH, DIM, DIM))
    # Eigenvalues from 1 to about 20: the unit first trial is too long.
    hessians = a @ np.swapaxes(a, -1, -2) + np.eye(DIM)
    b = rng.normal(size=(BATCH, DIM))

    def objective(x):
        ax = tf.einsum("bij,bj->bi", hessians, x)
        return 0.5 * tf.reduce_sum(x * ax, -1) - tf.reduce_sum(b * x, -1), ax - b

    x = rng.normal(size=(BATCH, DIM))
    value, gradient = objective(tf.constant(x))
    return objective, hessians, tf.constant(x), value, gradient


def _search(objective, x, value, gradient, active, max_iterations=50):
    return line_search.weak_wolfe(
        objective, x, value, gradient, -gradient, tf.constant(active), max_iterations
    )


def test_accepts_a_wolfe_step_at_the_line_minimizer():
    objective, hessians, x, value, gradient = _quadratics()
    result = _search(objective, x, value, gradient, [True] * BATCH)
    d = -gradient.numpy()
    slope = np.sum(gradient.numpy() * d, -1)
    exact = -slope / np.einsum("bi,bij,bj->b", d, hessians, d)
    step = result.step.numpy()
    assert np.all(result.accepted.numpy())
    np.testing.assert_allclose(step, exact, rtol=line_search.REFINE)
    # The value and gradient returned are those at the returned step.
    at_step = objective(x + step[:, None] * d)
    np.testing.assert_allclose(result.value, at_step[0], rtol=1e-10)
    np.testing.assert_allclose(result.gradient, at_step[1], rtol=1e-10, atol=1e-12)
    # Both Wolfe conditions hold there.
    assert np.all(
        result.value.numpy()
        <= value.numpy() + line_search.SUFFICIENT_DECREASE * step * slope
    )
    new_slope = np.sum(result.gradient.numpy() * d, -1)
    assert np.all(new_slope >= line_search.CURVATURE * slope)
    assert int(result.num_evaluations) >= 2  # the first trial is too long


def test_inactive_paths_are_left_as_they_were():
    objective, _, x, value, gradient = _quadratics(seed=1)
    result = _search(objective, x, value, gradient, [True, False, True])
    assert result.accepted.numpy().tolist() == [True, False, True]
    assert float(result.step[1]) == 0.0
    assert float(result.value[1]) == float(value[1])
    np.testing.assert_array_equal(result.gradient[1], gradient[1])


def test_a_target_not_finite_beyond_the_start_accepts_nothing():
    objective, _, x, value, gradient = _quadratics(seed=2)

    def nan_beyond(y):
        f, g = objective(y)
        moved = tf.reduce_any(tf.not_equal(y, x), axis=-1)
        return tf.where(moved, tf.constant(np.nan, f.dtype), f), g

    result = _search(nan_beyond, x, value, gradient, [True] * BATCH, max_iterations=7)
    assert not np.any(result.accepted.numpy())
    assert int(result.num_evaluations) == 7
    np.testing.assert_array_equal(result.value, value)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_in_a_function_equals_eager(jit_compile):
    objective, _, x, value, gradient = _quadratics(seed=3)
    active = [True, True, False]
    eager = _search(objective, x, value, gradient, active)
    compiled = tf.function(
        lambda: _search(objective, x, value, gradient, active),
        jit_compile=jit_compile,
        autograph=False,
    )()
    for got, want in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
