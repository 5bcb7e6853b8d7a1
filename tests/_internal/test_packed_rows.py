"""Structured batches packed into one int32 tensor and back, bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_vi_estimators._internal import packed_rows


def test_round_trip_every_dtype_bit_for_bit():
    rng = np.random.default_rng(0)
    batch = {
        "f32": np.array([[np.nan, -np.inf], [-0.0, 1e-40]], np.float32),
        "f64": rng.normal(size=[2, 3]),
        "f16": rng.normal(size=[2]).astype(np.float16),
        "bf16": tf.cast(rng.normal(size=[2, 1]), tf.bfloat16),
        "i8": np.array([-128, 127], np.int8),
        "u16": np.array([[0, 65535]] * 2, np.uint16),
        "i64": np.array([-(2**62), 2**62 + 1], np.int64),
        "bool": np.array([[True, False], [False, True]]),
        "c128": np.array([1 + 2j, -3e300j]),
        "nested": (np.arange(12, dtype=np.int32).reshape(2, 2, 3),),
    }
    dataset = tf.data.Dataset.from_tensors(batch)
    layout = packed_rows.row_layout(dataset)
    packed = packed_rows.packed(dataset, layout)
    assert packed.element_spec == tf.TensorSpec([2, 27], tf.int32)
    unpacked = packed_rows.unpacked(next(iter(packed)), layout)
    for got, want in zip(
        tf.nest.flatten(unpacked), tf.nest.flatten(batch), strict=True
    ):
        want = np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.numpy().tobytes() == want.tobytes()


def test_unpackable_batch_parts_are_refused_naming_them():
    dataset = tf.data.Dataset.from_tensors((tf.zeros([2, 1]), tf.constant(["a", "b"])))
    with pytest.raises(TypeError, match="numeric or bool tensor"):
        packed_rows.row_layout(dataset)
