"""The fit loop: a non-finite step stops the fit, naming it, before its update."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.fitting import NonFiniteLossError, fit_surrogate_posterior

tfd = tfp.distributions


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_finite_values():
    def make():
        v = tf.Variable(0.0, name="v")
        return v, tfd.Normal(v, 1.0)

    def target(z):
        # Finite until the surrogate's mean passes 1, then NaN.
        return tfd.Normal(3.0, 1.0).log_prob(z) + tf.where(loc_var() > 1.0, np.nan, 0.0)

    v, q = make()
    loc_var = lambda: v  # noqa: E731
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as info:
        fit_surrogate_posterior(
            target, q, keras.optimizers.SGD(0.1), 100, seed=(17, 42), progress=False
        )
    step = info.value.step
    assert 0 < step < 100
    assert f"step {step}" in str(info.value) and "the loss" in str(info.value)
    failed_value = v.numpy()
    assert np.isfinite(failed_value) and failed_value > 1.0

    v, q = make()
    loc_var = lambda: v  # noqa: E731
    fit_surrogate_posterior(
        target, q, keras.optimizers.SGD(0.1), step, seed=(17, 42), progress=False
    )
    assert v.numpy() == failed_value
