"""Tests of the Python-level argument checks."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_vi_estimators.distributions import validation


@pytest.mark.parametrize(
    "value", [1.0, [0.5, 2.0], np.zeros(3), tf.zeros([2, 2]), tf.Variable([1.0]), 3]
)
def test_accepts_float_tensor_likes(value):
    validation.check_float_tensor_like(value, "x")


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (
            None,
            TypeError,
            "`x` must be a floating-point Tensor of shape \\[d\\]; got None",
        ),
        (tf.zeros([3], tf.int32), TypeError, "`x` must have a floating dtype.*int32"),
        ("abc", TypeError, "`x` must be a floating-point Tensor"),
        (
            np.zeros([]),
            ValueError,
            "`x` must have rank >= 1 of shape \\[d\\]; got ndarray\\(shape=\\[\\]",
        ),
    ],
)
def test_rejects_with_the_argument_name(value, error, match):
    with pytest.raises(error, match=match):
        validation.check_float_tensor_like(
            value, "x", min_rank=1, expected="of shape [d]"
        )


def test_static_value_checks_skip_variables_and_symbolic_tensors():
    validation.check_positive_if_static(tf.Variable(-1.0), "t")  # may change later

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def symbolic(t):
        validation.check_positive_if_static(t, "t")
        return t

    symbolic(tf.constant(-1.0))
    with pytest.raises(ValueError, match="`t` must be positive.*-1"):
        validation.check_positive_if_static(tf.constant([1.0, -1.0]), "t")
    with pytest.raises(ValueError, match=r"`p` must lie in \[0, 1\]"):
        validation.check_probabilities_if_static([0.2, 1.2], "p")


def test_common_float_dtype_names_the_mismatch():
    assert validation.common_float_dtype({"a": 1.0, "b": None}) == tf.float32
    assert validation.common_float_dtype({"a": np.zeros(2), "b": 1.0}) == tf.float64
    with pytest.raises(TypeError, match="`a` is float32, `b` is float64"):
        validation.common_float_dtype({"a": tf.zeros([1]), "b": np.zeros(1)})


def test_describe_is_short():
    assert validation.describe(None) == "None"
    assert (
        validation.describe(np.zeros([1000])) == "ndarray(shape=[1000], dtype=float64)"
    )
    assert len(validation.describe(list(range(1000)))) <= 120
