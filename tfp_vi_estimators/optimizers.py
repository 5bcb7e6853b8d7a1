"""Small functional optimizers in TensorFlow with optax's interface.

`fit_surrogate_posterior_stateless` (like `tfp.math.minimize_stateless`) takes
any object with optax's two methods:

```none
state = optimizer.init(params)
updates, state = optimizer.update(grads, state, params)   # params += updates
```

TensorFlow has no optax, so these make the stateless fit usable without JAX.
Parameters, gradients and updates are (nested structures of) `Tensor`s; the
state is a tuple of such structures, so the whole loop traces under XLA.

The hyperparameters are checked when the optimizer is made, and the
structure, dtypes and shapes of `params`, `grads` and `state` when `init` and
`update` are called (in Python, so at trace time in a `tf.function`). The
gradients' values are not checked (that would be a read in the hot path): a
non-finite gradient gives non-finite updates, as in optax.

```none
sgd:   m_t = momentum m_{t-1} + g_t;       update = -lr m_t   (m = g without momentum)
adam:  m_t = b1 m_{t-1} + (1 - b1) g_t;    v_t = b2 v_{t-1} + (1 - b2) g_t^2
       update = -lr (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)
```

#### References

[1] Diederik P. Kingma and Jimmy Ba. Adam: a method for stochastic
    optimization. ICLR 2015. arXiv:1412.6980.
"""

import math
import numbers
import typing

import tensorflow as tf

__all__ = ["FunctionalOptimizer", "adam", "sgd"]


class FunctionalOptimizer(typing.NamedTuple):
    """An optax-style gradient transformation: `init` and `update`."""

    init: typing.Callable
    update: typing.Callable


def _map(fn, *structures):
    return tf.nest.map_structure(fn, *structures)


def _zeros_like(params):
    return _map(tf.zeros_like, params)


def sgd(learning_rate, momentum=None) -> FunctionalOptimizer:
    """Stochastic gradient descent, optionally with (heavy-ball) momentum.

    Args:
      learning_rate: positive Python float.
      momentum: `None` or a Python float in [0, 1).

    Returns:
      A `FunctionalOptimizer`.
    """
    _check_rate(learning_rate)
    if momentum is not None:
        _check_fraction("momentum", momentum)

    def init(params):
        _check_params(params)
        return () if momentum is None else (_zeros_like(params),)

    def update(grads, state, params=None):
        del params
        _check_state(state, 0 if momentum is None else 1)
        _check_grads(grads, state)
        if momentum is None:
            return _map(lambda g: -learning_rate * g, grads), state
        velocity = _map(lambda m, g: momentum * m + g, state[0], grads)
        return _map(lambda m: -learning_rate * m, velocity), (velocity,)

    return FunctionalOptimizer(init, update)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8) -> FunctionalOptimizer:
    """Adam with bias correction, as `optax.adam`.

    Args:
      learning_rate: positive Python float.
      b1: decay of the first moment, in [0, 1). Default value: `0.9`.
      b2: decay of the second moment, in [0, 1). Default value: `0.999`.
      eps: positive float added to the root of the second moment (at 0 a
        zero gradient would give 0/0). Default value: `1e-8`.

    Returns:
      A `FunctionalOptimizer`; its state is `(count, first moments, second
      moments)`.
    """
    _check_rate(learning_rate)
    _check_fraction("b1", b1)
    _check_fraction("b2", b2)
    _check_positive("eps", eps)

    def init(params):
        _check_params(params)
        return (tf.zeros([], tf.int32), _zeros_like(params), _zeros_like(params))

    def update(grads, state, params=None):
        del params
        _check_state(state, 3)
        _check_grads(grads, state[1:])
        count, mu, nu = state
        count = count + 1
        mu = _map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, grads)
        nu = _map(lambda v, g: b2 * v + (1.0 - b2) * tf.square(g), nu, grads)

        def step(m, v):
            t = tf.cast(count, m.dtype)
            m_hat = m / (1.0 - tf.pow(tf.cast(b1, m.dtype), t))
            v_hat = v / (1.0 - tf.pow(tf.cast(b2, m.dtype), t))
            return -learning_rate * m_hat / (tf.sqrt(v_hat) + eps)

        return _map(step, mu, nu), (count, mu, nu)

    return FunctionalOptimizer(init, update)


def _check_rate(learning_rate):
    """Finite and non-negative: zero (as in optax and Keras) keeps the
    parameters fixed, to trace gradients at one point."""
    _check_real("learning_rate", learning_rate, "a non-negative float")
    if not (learning_rate >= 0 and math.isfinite(learning_rate)):
        raise ValueError(
            f"`learning_rate` must be non-negative and finite; got {learning_rate}."
        )


def _check_real(name, value, expected):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be {expected} (a Python or NumPy number); got "
            f"{value!r} of type {type(value).__name__}."
        )


def _check_positive(name, value):
    _check_real(name, value, "a positive float")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be positive and finite; got {value}.")


def _check_fraction(name, value):
    _check_real(name, value, "a float in [0, 1)")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value}.")


def _check_params(params):
    """`params`: a non-empty structure of floating-point tensors."""
    leaves = tf.nest.flatten(params)
    if not leaves:
        raise ValueError(f"`params` must hold at least one tensor; got {params!r}.")
    for leaf in leaves:
        if isinstance(leaf, float):
            continue
        try:
            floating = tf.as_dtype(leaf.dtype).is_floating
        except (AttributeError, TypeError):
            floating = False
        if not floating:
            raise TypeError(
                "`params` must be a structure of floating-point tensors; got a "
                f"leaf {leaf!r} of type {type(leaf).__name__}."
            )


def _check_state(state, length):
    if not isinstance(state, tuple) or len(state) != length:
        raise TypeError(
            f"`state` must be the tuple of {length} that `init` returned; got "
            f"{state!r}."
        )


def _check_grads(grads, moments):
    """`grads`: tensors with the structure, dtypes and shapes of `moments`."""
    for leaf in tf.nest.flatten(grads):
        if not tf.is_tensor(leaf):
            raise TypeError(
                "`grads` must be a structure of tensors (a parameter that the "
                f"loss does not depend on has a None gradient); got {leaf!r}."
            )
    for moment in moments:  # each shaped as the parameters given to `init`
        try:
            tf.nest.assert_same_structure(moment, grads)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "`grads` must have the structure of the parameters given to "
                f"`init`: {error}"
            ) from None
        for g, m in zip(tf.nest.flatten(grads), tf.nest.flatten(moment), strict=True):
            if g.dtype != m.dtype or not g.shape.is_compatible_with(m.shape):
                raise ValueError(
                    "`grads` must match the parameters given to `init` in dtype "
                    f"and shape: got {g.dtype.name} {g.shape} for a "
                    f"{m.dtype.name} {m.shape} parameter."
                )
