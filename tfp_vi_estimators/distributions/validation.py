"""Python-level argument checks shared by the distributions in this package.

The checks run before any tensor work and only look at what is known
statically (dtypes, static shapes, constant values), so they are free inside
`tf.function` and never reject a symbolic tensor whose value is unknown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfp_vi_estimators._internal import tfp_internals

__all__ = [
    "check_float_tensor_like",
    "check_known_sizes_equal",
    "check_positive_if_static",
    "check_probabilities_if_static",
    "common_float_dtype",
    "convert_parameter",
    "describe",
    "static_dimensions",
    "static_shape",
]


def describe(value: Any) -> str:
    """A short description of `value` for error messages (no tensor dumps)."""
    if value is None:
        return "None"
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is not None and shape is not None:
        return f"{type(value).__name__}(shape={list(tf.TensorShape(shape))}, dtype={tf.as_dtype(dtype).name})"
    return f"{type(value).__name__} {value!r}"[:120]


def static_shape(value: Any) -> tf.TensorShape:
    """The static shape of a Tensor-like (unknown rank if it cannot be read)."""
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            shape = np.shape(value)
        except (TypeError, ValueError):
            return tf.TensorShape(None)
    return tf.TensorShape(shape)


def static_dimensions(value: Any, axes: list[int]) -> tuple[int | None, ...]:
    """The static sizes of `value` along `axes` (None where unknown).

    All None when the static rank is unknown or 0; the caller checks the rank
    first (`check_float_tensor_like(..., min_rank=...)`).
    """
    shape = static_shape(value)
    if not shape.rank:
        return tuple(None for _ in axes)
    return tuple(tf.compat.dimension_value(shape[axis]) for axis in axes)


def check_float_tensor_like(
    value: Any, name: str, *, min_rank: int = 0, expected: str = ""
) -> None:
    """Raises unless `value` is a (possibly symbolic) floating-point Tensor-like.

    Args:
      value: the argument to check.
      name: the argument's name, used in the messages.
      min_rank: smallest static rank allowed (checked only when the rank is
        known statically).
      expected: words describing the expected shape, appended to messages.

    Raises:
      TypeError: if `value` is None, not numeric, or of a non-floating dtype.
      ValueError: if its static rank is smaller than `min_rank`.
    """
    suffix = f" {expected}" if expected else ""
    if value is None:
        raise TypeError(f"`{name}` must be a floating-point Tensor{suffix}; got None.")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`{name}` must be a floating-point Tensor{suffix}; got {describe(value)}."
            ) from err
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
            raise TypeError(
                f"`{name}` must be a floating-point Tensor{suffix}; got a Python value "
                f"of numpy dtype {dtype}."
            )
    elif not tf.as_dtype(dtype).is_floating:
        raise TypeError(
            f"`{name}` must have a floating dtype (float16/32/64){suffix}; got "
            f"{describe(value)}."
        )
    rank = static_shape(value).rank
    if rank is not None and rank < min_rank:
        raise ValueError(
            f"`{name}` must have rank >= {min_rank}{suffix}; got {describe(value)}."
        )


def check_known_sizes_equal(size: int | None, other: int | None, message: str) -> None:
    """Raises `ValueError(message)` if both static sizes are known and differ."""
    if size is not None and other is not None and size != other:
        raise ValueError(message)


def _static_value(value: Any) -> np.ndarray | None:
    if isinstance(value, tf.Variable) or tfp_internals.has_reference_semantics(value):
        return None  # Trainable state: its value may change, never freeze it.
    if tf.is_tensor(value):
        static = tf.get_static_value(value)
        return None if static is None else np.asarray(static)
    return np.asarray(value, dtype=np.float64)


def check_positive_if_static(value: Any, name: str) -> None:
    """Raises `ValueError` if `value` is known statically and not all positive."""
    static = _static_value(value)
    if static is not None and not np.all(static > 0):
        raise ValueError(
            f"`{name}` must be positive; got {describe(value)} with values "
            f"{np.array2string(static.ravel()[:8], precision=4)}"
            f"{' ...' if static.size > 8 else ''}."
        )


def check_probabilities_if_static(value: Any, name: str) -> None:
    """Raises `ValueError` if `value` is known statically and outside [0, 1]."""
    static = _static_value(value)
    if static is not None and not np.all((static >= 0) & (static <= 1)):
        raise ValueError(
            f"`{name}` must lie in [0, 1]; got {describe(value)} with values "
            f"{np.array2string(static.ravel()[:8], precision=4)}"
            f"{' ...' if static.size > 8 else ''}."
        )


def convert_parameter(value: Any, dtype: tf.DType, name: str) -> Any:
    """Converts to a Tensor, keeping variables and deferred tensors by reference.

    Keeping references (as TFP distributions do) is what lets gradients reach a
    `tf.Variable` or `tfp.util.TransformedVariable` parameter.
    """
    return tfp_internals.convert_nonref_to_tensor(value, dtype=dtype, name=name)


def common_float_dtype(named_values: dict[str, Any]) -> tf.DType:
    """The common floating dtype of the non-None values (float32 for Python numbers).

    Raises:
      TypeError: if two arguments carry different dtypes, naming both.
    """
    seen: dict[tf.DType, str] = {}
    for name, value in named_values.items():
        dtype = getattr(value, "dtype", None)
        if value is None or dtype is None:
            continue
        seen.setdefault(tf.as_dtype(dtype).base_dtype, name)
    if len(seen) > 1:
        listing = ", ".join(f"`{n}` is {d.name}" for d, n in seen.items())
        raise TypeError(f"Arguments must share one floating dtype; got {listing}.")
    return next(iter(seen), tf.float32)
