"""Rebuild a distribution with every tensor-like parameter mapped by a function.

`map_tensor_parameters(distribution, fn)` copies the distribution and,
recursively, every distribution and bijector among its parameters, replacing
each tensor-like parameter (a `tf.Variable`, a `tfp.util.TransformedVariable`
/ `DeferredTensor`, a tensor computed by an encoder) by `fn(tensor)`. Plain
values (numbers, arrays, dtypes, shapes, strings) are kept. It backs the
stopped copy (`fn = tf.stop_gradient`, stopped_surrogate.py) and the float32 copy of a
mixed-precision surrogate (`fn = cast to float32`, keras_models.py).
"""

import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["CannotCopy", "map_tensor_parameters"]


class CannotCopy(Exception):
    """A parameter that a copy cannot map (a callable, a network, ...)."""


_PLAIN_TYPES = (
    numbers.Number,
    np.ndarray,
    np.generic,
    str,
    bytes,
    type(None),
    tf.dtypes.DType,
    tf.TensorShape,
)


def _map_value(value, fn):
    if isinstance(value, (tfd.Distribution, tfb.Bijector)):
        return map_tensor_parameters(value, fn)
    if isinstance(value, (tf.Variable, tfp.util.DeferredTensor)) or tf.is_tensor(value):
        return fn(tf.convert_to_tensor(value))
    if isinstance(value, _PLAIN_TYPES):
        return value
    # Plain containers: tf.Module wraps lists and dicts in trackable types
    # whose constructors do not take iterables.
    if isinstance(value, dict):
        return {k: _map_value(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_value(v, fn) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_map_value(v, fn) for v in value)
    raise CannotCopy(type(value).__name__)


def map_tensor_parameters(obj, fn):
    """A copy of the distribution or bijector `obj` with `fn` applied to tensors.

    Raises:
      CannotCopy: naming the type of a parameter that cannot be mapped, or the
        class whose `parameters` do not rebuild it.
    """
    overrides = {k: _map_value(v, fn) for k, v in obj.parameters.items()}
    try:
        return type(obj)(**overrides)
    except Exception as e:  # a class whose `parameters` do not round-trip
        raise CannotCopy(f"{type(obj).__name__}: {e}") from e
