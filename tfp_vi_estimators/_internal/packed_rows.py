"""Structured batches packed into one int32 tensor, one row per example, exactly.

Keras 3's `fit` and `evaluate` reduce a first batch across replicas with
`strategy.reduce`, which under a multi-worker `MultiWorkerMirroredStrategy`
fails on a structure such as `(features, labels)` but works on one tensor
(`keras_models.SurrogatePosteriorModel`, tests/test_keras_multi_worker.py).
So, under a strategy, the Keras models hand Keras each batch as one tensor:

```none
part of dtype with 4 or 8 bytes   bitcast to 1 or 2 int32 words per value
narrower part (bool, int8/16,     cast to int32 (16-bit floats: their bits,
  float16, bfloat16)              as uint16, first)
row                               the parts' words, concatenated in
                                  tf.nest.flatten order
```

`unpacked` inverts `packed` bit for bit (NaN payloads, -0, denormals).
"""

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["RowLayout", "packed", "row_layout", "unpacked"]


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """The parts of a dataset's batches: their structure, dtypes and shapes.

    `structure` is the element's structure with `None` leaves; `parts` the
    `(dtype, per-example shape)` of each leaf, in `tf.nest.flatten` order.
    """

    structure: Any
    parts: tuple


def row_layout(data):
    """The `RowLayout` of a dataset of structured batches, else `None`.

    Raises:
      TypeError: for a part that cannot be packed (not a numeric or bool
        tensor with a batch dimension and a fixed per-example shape).
    """
    if not isinstance(data, tf.data.Dataset):
        return None
    specs = tf.nest.flatten(data.element_spec)
    if len(specs) < 2:
        return None  # one tensor: Keras reduces it without trouble
    for spec in specs:
        d = spec.dtype
        if not (
            isinstance(spec, tf.TensorSpec)
            and any((d.is_bool, d.is_integer, d.is_floating, d.is_complex))
            and spec.shape.rank
            and spec.shape[1:].is_fully_defined()
        ):
            raise TypeError(
                "Under a distribution strategy each batch of the dataset goes to "
                "Keras as one tensor, so every part must be a numeric or bool "
                "tensor with a batch dimension and a fixed per-example shape; "
                f"got {spec} in {data.element_spec}."
            )
    parts = tuple((s.dtype, tuple(s.shape[1:])) for s in specs)
    structure = tf.nest.map_structure(lambda _: None, data.element_spec)
    return RowLayout(structure, parts)


def _int32_width(dtype, shape):
    """int32 columns holding one example of a part: one per 4 bytes (at least 1)."""
    return int(np.prod(shape, dtype=np.int64)) * max(1, dtype.size // 4)


def packed(dataset, layout):
    """`dataset` with each batch packed into one int32 tensor, one row per example.

    Exact: 4- and 8-byte values are bitcast (8 bytes to two int32 words),
    narrower ones (bool, 8- and 16-bit integers, the bits of 16-bit floats)
    cast to int32; `unpacked` inverts it.
    """

    def columns(part, dtype, shape):
        if dtype.size < 4:
            if dtype.is_floating:
                part = tf.bitcast(part, tf.uint16)
            part = tf.cast(part, tf.int32)
        elif dtype != tf.int32:
            part = tf.bitcast(part, tf.int32)
        return tf.reshape(part, [-1, _int32_width(dtype, shape)])

    def pack(*element):
        parts = tf.nest.flatten(element)
        return tf.concat(
            [columns(p, *spec) for p, spec in zip(parts, layout.parts, strict=True)],
            axis=1,
        )

    return dataset.map(pack, num_parallel_calls=tf.data.AUTOTUNE)


def unpacked(data, layout):
    """The batch packed by `packed`, as it was (`data` if `layout` is None)."""
    if layout is None:
        return data
    widths = [_int32_width(dtype, shape) for dtype, shape in layout.parts]
    parts = []
    for part, (dtype, shape) in zip(
        tf.split(data, widths, axis=1), layout.parts, strict=True
    ):
        if dtype.size < 4:
            part = tf.cast(part, tf.uint16 if dtype.is_floating else dtype)
            if dtype.is_floating:
                part = tf.bitcast(part, dtype)
        elif dtype != tf.int32:
            words = dtype.size // 4
            if words > 1:
                part = tf.reshape(part, [-1, part.shape[1] // words, words])
            part = tf.bitcast(part, dtype)
        parts.append(tf.reshape(part, [-1, *shape]))
    return tf.nest.pack_sequence_as(layout.structure, parts)
