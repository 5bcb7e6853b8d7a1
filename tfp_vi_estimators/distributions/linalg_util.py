"""Small linear-algebra helpers shared by the custom-gradient normals and W2."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["lower_triangle", "sqrt_with_finite_gradient", "sum_of_outer_products"]


def sum_of_outer_products(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """`sum_n a_n b_n^T` over the leading (sample) axis.

    Args:
      a: `Tensor` of shape `[n] + batch_shape + [d1]`.
      b: `Tensor` of shape `[n] + batch_shape + [d2]`.

    Returns:
      `Tensor` of shape `batch_shape + [d1, d2]`.
    """
    return tf.einsum("n...i,n...j->...ij", a, b)


def lower_triangle(matrix: tf.Tensor) -> tf.Tensor:
    """The lower triangle (diagonal included) of a batch of square matrices."""
    return tf.linalg.band_part(matrix, -1, 0)


def sqrt_with_finite_gradient(x: tf.Tensor) -> tf.Tensor:
    """`sqrt(max(x, 0))` whose gradient is 0 (not inf or NaN) where `x <= 0`.

    Eigenvalues of a singular PSD matrix come back as 0 or tiny negatives;
    the plain square root would send an infinite gradient through them.
    """
    positive = x > 0
    safe_x = tf.where(positive, x, tf.ones_like(x))
    return tf.where(positive, tf.sqrt(safe_x), tf.zeros_like(x))
