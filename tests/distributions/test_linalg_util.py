"""Tests of the shared linear-algebra helpers."""

import numpy as np
import tensorflow as tf

from tfp_vi_estimators.distributions import linalg_util


def test_sum_of_outer_products_sums_over_leading_axis_only():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 4))
    expected = np.einsum("nbi,nbj->bij", a, b)
    np.testing.assert_allclose(
        linalg_util.sum_of_outer_products(a, b), expected, rtol=1e-12
    )


def test_lower_triangle_keeps_diagonal():
    matrix = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(linalg_util.lower_triangle(matrix), np.tril(matrix))


def test_sqrt_with_finite_gradient_at_zero_and_negative():
    x = tf.constant([4.0, 0.0, -1e-9])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = linalg_util.sqrt_with_finite_gradient(x)
    np.testing.assert_allclose(y, [2.0, 0.0, 0.0])
    np.testing.assert_allclose(tape.gradient(y, x), [0.25, 0.0, 0.0])
