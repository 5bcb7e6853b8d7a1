"""The problem the fitting tests share, as a fixture.

Test modules are imported with `--import-mode=importlib` and cannot import
one another, so the shared target and surrogate come from here.
"""

import types

import pytest
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors


def _surrogate():
    """A fresh trainable diagonal Gaussian, away from the target."""
    loc = tf.Variable([0.3, -0.2, 0.1], name="loc")
    scale = tfp.util.TransformedVariable([1.0, 0.5, 2.0], tfb.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale)


@pytest.fixture
def problem():
    """`target` (a log-density), `surrogate()` (a fresh one per call) and `seed`."""
    return types.SimpleNamespace(
        target=tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0]).log_prob,
        surrogate=_surrogate,
        seed=(17, 42),
        initial_loc=[0.3, -0.2, 0.1],
    )
