"""Argument checks that run before any tensor work; each error names the argument."""

import numbers

import numpy as np
import tensorflow as tf

from tfp_vi_estimators._internal.surrogates import (
    REQUIRED_METHODS,
    behaves_as_distribution,
)


def check_callable(name, value):
    if not callable(value):
        raise TypeError(
            f"`{name}` must be a Python callable; got {value!r} of type "
            f"{type(value).__name__}."
        )


def check_distribution(name, value, optional=False):
    """A `tfd.Distribution`, or an object that behaves as one (as `tfp.vi`
    accepts: TFP's surrogate builders return a `DeferredModule`)."""
    if optional and value is None:
        return
    if not behaves_as_distribution(value):
        expected = "None or " if optional else ""
        missing = [a for a in REQUIRED_METHODS if not hasattr(value, a)]
        raise TypeError(
            f"`{name}` must be {expected}a tfp.distributions.Distribution (or an "
            f"object that behaves as one); got {value!r} of type "
            f"{type(value).__name__}, which lacks {', '.join(missing)}."
        )


def check_positive_integer(name, value, minimum=1, integral_floats=False):
    """A Python/NumPy integer, or an integer scalar Tensor, at least `minimum`.

    With `integral_floats` an integer-valued Python/NumPy float (`1e4`) is
    accepted too, as `tfp.vi` accepts it for sample sizes.

    Returns:
      The value, as a Python `int` when it was a Python/NumPy number.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an integer; got the bool {value!r}.")
    if integral_floats and isinstance(value, numbers.Real):
        if not float(value).is_integer():
            raise TypeError(
                f"`{name}` must be a positive integer (an integer-valued float "
                f"such as 1e4 is accepted); got {value!r}."
            )
        value = int(value)
    if isinstance(value, numbers.Integral):
        static = int(value)
        value = static
    elif tf.is_tensor(value) or isinstance(value, (np.ndarray, tf.Variable)):
        dtype = tf.as_dtype(value.dtype)
        if not dtype.is_integer:
            raise TypeError(f"`{name}` must be an integer; got a {dtype.name} tensor.")
        rank = value.shape.rank if hasattr(value.shape, "rank") else np.ndim(value)
        if rank not in (0, None):
            raise ValueError(f"`{name}` must be a scalar; got shape {value.shape}.")
        static = tf.get_static_value(value)
        if static is None:
            return value
        static = int(static)
    else:
        raise TypeError(
            f"`{name}` must be a positive integer; got {value!r} of type "
            f"{type(value).__name__}."
        )
    if static < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}; got {static}.")
    return value


def check_seed(value):
    """None, an integer, or a stateless seed: an integer pair (shape [2])."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`seed` must be None, an int or an int pair; got {value!r}.")
    if isinstance(value, numbers.Integral):
        return
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(
                f"`seed` given as a sequence must be an integer pair; got {len(value)} "
                "elements."
            )
        for part in value:
            if isinstance(part, (bool, np.bool_)) or not (
                isinstance(part, numbers.Integral)
                or (tf.is_tensor(part) and part.dtype.is_integer)
            ):
                raise TypeError(f"`seed` must be an integer pair; got {value!r}.")
        return
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        dtype = tf.as_dtype(value.dtype)
        shape = tuple(value.shape)
        if dtype.is_integer and (len(shape) == 0 or shape == (2,)):
            return
        raise ValueError(
            "`seed` must be None, an int, or a stateless seed of shape [2] and "
            f"integer dtype; got shape {list(shape)} and dtype {dtype.name}."
        )
    raise TypeError(
        "`seed` must be None, an int, or a stateless seed of shape [2]; got "
        f"{value!r} of type {type(value).__name__}."
    )


def check_name(value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`name` must be None or a str; got {type(value).__name__}.")


def check_stopped_surrogate(surrogate_posterior, stopped_surrogate_posterior):
    """The stopped copy must match the surrogate: structure, shapes, dtypes, family.

    It is scored at the surrogate's samples, so a different event shape or
    dtype would fail deep inside the estimator, a different batch shape would
    broadcast silently into a wrong loss and a different kind of distribution
    (say discrete for continuous) would score the samples as -inf or NaN.
    """
    if stopped_surrogate_posterior is None:
        return
    check_distribution("stopped_surrogate_posterior", stopped_surrogate_posterior)
    for what in ("event_shape", "batch_shape", "dtype", "reparameterization_type"):
        expected = getattr(surrogate_posterior, what)
        given = getattr(stopped_surrogate_posterior, what)
        if not _same_nested(expected, given):
            raise ValueError(
                f"`stopped_surrogate_posterior` must have the {what} (and structure) "
                f"of `surrogate_posterior`: expected {expected}, got {given}."
            )


def _same_nested(expected, given):
    try:
        tf.nest.assert_same_structure(expected, given)
    except (ValueError, TypeError):
        return False
    return all(
        a.is_compatible_with(b) if isinstance(a, tf.TensorShape) else a == b
        for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(given), strict=True)
    )
