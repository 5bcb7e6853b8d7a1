"""An identity on samples whose backward pass multiplies by a per-particle scale.

The doubly reparameterized estimator evaluates the target once per particle,
but theta and phi need different coefficients on it: the path to phi is
rescaled by a factor that depends on the importance weights, which exist only
after the target has been evaluated. The sampler therefore returns, with a
`PathGradient.SCALED` draw, a `GradientScale` that the samples passed through;
the estimator computes the factor and hands it over with `set(scale)` in its
forward pass; the backward pass, which always runs after the forward pass
(eager, `tf.function` and XLA alike), reads it. The object travels in the
data flow (`Draw.gradient_scale` -> `per_draw_loss(..., gradient_scale)`), so a
reader sees where the scale comes from.
"""

import tensorflow as tf

__all__ = ["GradientScale", "per_sample"]


class GradientScale:
    """`identity(x) == x`; its gradient is the upstream gradient times `scale`.

    `scale` is shaped `[S, K] + batch_shape`; the backward pass flattens it to
    the samples' `[S * K] + batch_shape` layout and broadcasts it over each
    sample's event dimensions.
    """

    def __init__(self):
        self._scale = None

        @tf.custom_gradient
        def identity(x):
            return tf.identity(x), self._scaled_like

        self.identity = identity

    def set(self, scale):
        """Gives the backward pass its per-particle multiplier."""
        self._scale = scale

    def _scaled_like(self, upstream):
        if self._scale is None:
            raise RuntimeError(
                "GradientScale: the backward pass ran before the estimator set "
                "its scale."
            )
        return upstream * tf.cast(per_sample(self._scale, upstream), upstream.dtype)


def per_sample(scale, samples):
    """A per-particle `[S, K] + batch` tensor laid out to broadcast over `samples`.

    `samples` are drawn `[S * K] + batch + event` (`Layout.DRAWS_FIRST`); the
    result is `[S * K] + batch + [1] * event_rank`.
    """
    event_rank = samples.shape.rank - (scale.shape.rank - 1)
    flat_shape = tf.concat(
        [[-1], tf.shape(scale)[2:], tf.ones([event_rank], tf.int32)], axis=0
    )
    return tf.reshape(scale, flat_shape)
