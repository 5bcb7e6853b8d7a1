"""A per-particle multiplier on the samples' gradient, passed as data.

The doubly reparameterized estimator evaluates the target once per particle,
but theta and phi need different coefficients on it: the path to phi is
rescaled by a factor `s` that depends on the importance weights, which exist
only after the target has been evaluated at the samples. The factor is
therefore sent backwards, through the gradient, instead of forwards:

```none
sampler     (z~, port) = scalable(z)       z~ = z; port = 0, [S, K] + batch
estimator   surrogate += send_scale(port, s)          value 0
backward    d port = s                     (send_scale's gradient, from `s`)
            d z    = d z~ * s              (scalable's gradient, per particle)
```

`scalable` is an identity with a second output, a zero `port`; its backward
pass multiplies the samples' incoming gradient by the gradient that reached
the port. `send_scale` is zero in value and its backward pass gives the port
the tensor `s`, computed by the estimator from the (stopped) weights in its
forward pass. Nothing is stored between the passes: `s` is an input of the
op whose gradient delivers it, so the same holds eagerly, in `tf.function`
and under XLA. The port travels in the data flow
(`LogDensities.scale_port`). If nothing reaches the port (the per-draw loss
is not differentiated), the samples' path gradient is zero.
"""

import tensorflow as tf

__all__ = ["per_sample", "scalable", "send_scale"]


def scalable(x, port_shape, port_dtype):
    """`(x, port)`: `x` unchanged, and a zero port whose gradient scales `x`'s.

    Args:
      x: samples `[S * K] + batch + event` (`Layout.DRAWS_FIRST`).
      port_shape: `[S, K] + batch`, an integer vector.
      port_dtype: the port's dtype (the log-densities').

    Returns:
      `(y, port)`: `y == x` in value, whose gradient is the upstream gradient
      times the port's gradient (laid out by `per_sample`); `port`, zeros of
      `port_shape`.
    """

    @tf.custom_gradient
    def identity(x):
        def grad(upstream, port_gradient):
            scale = per_sample(port_gradient, upstream)
            return upstream * tf.cast(scale, upstream.dtype)

        return (tf.identity(x), tf.zeros(port_shape, port_dtype)), grad

    return identity(x)


def send_scale(port, scale):
    """Zeros like `port`, whose backward pass gives `port` the gradient `scale`.

    Args:
      port: a `scalable` port (or a sum of ports), `[S, K] + batch`.
      scale: the per-particle multiplier, shaped like `port`; not
        differentiated.

    Returns:
      Zeros like `port`: add them to the surrogate (the value is unchanged).
    """
    scale = tf.stop_gradient(tf.cast(scale, port.dtype))

    @tf.custom_gradient
    def send(port):
        def grad(upstream):
            del upstream  # a multiplier, not a linear term: the same for any loss
            return scale

        return tf.zeros_like(port), grad

    return send(port)


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
