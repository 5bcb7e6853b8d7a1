"""Argument checks must fire the same way eagerly and while a graph is traced.

`assert_raises(mode, call, error, match)` runs `call()` eagerly (`"eager"`) or
wrapped in `tf.function` (`"function"`: the checks run in Python at trace time,
so they must raise there, before any op is added to the graph).
"""

import pytest
import tensorflow as tf

MODES = ("eager", "function")

mode_parameter = pytest.mark.parametrize("mode", MODES)


def assert_raises(mode, call, error, match):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    if mode == "function":
        call = tf.function(call)
    with pytest.raises(error, match=match):
        call()
