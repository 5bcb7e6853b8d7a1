"""Derivatives of a Csiszar function, for estimators that weight by them."""

import tensorflow as tf

__all__ = ["discrepancy_derivatives"]


def discrepancy_derivatives(discrepancy_fn, logu):
    """First and second derivatives of an elementwise discrepancy, stopped.

    ```none
    f1 = d f(t) / dt,   f2 = d^2 f(t) / dt^2,   evaluated at t = logu
    ```

    Args:
      discrepancy_fn: elementwise Python callable `f(logu)`, a Csiszar function
        in log space such as `kl_reverse`.
      logu: floating `Tensor` of points at which to differentiate.

    Returns:
      f1, f2: `Tensor`s shaped like `logu`, with no gradient flowing through
        them. A derivative that does not depend on `logu` (for example the
        constant `f1` of `kl_reverse`) comes back as the right constant, and an
        absent one as zeros.
    """
    t = tf.stop_gradient(tf.convert_to_tensor(logu))
    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape() as outer:
        outer.watch(t)
        with tf.GradientTape() as inner:
            inner.watch(t)
            f = discrepancy_fn(t)
        f1 = inner.gradient(f, t, unconnected_gradients=zero)
    f2 = outer.gradient(f1, t, unconnected_gradients=zero)
    return tf.stop_gradient(f1), tf.stop_gradient(f2)
