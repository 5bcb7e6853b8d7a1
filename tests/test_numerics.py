"""Numerical extremes: every estimator stays finite in float32.

Log-weights spread over +-1e4, K up to 10,000, surrogate scales near 1e-6 and
1e6, with the default discrepancy (kl_reverse) and with kl_forward on
moderate log-weights. (Discrepancies that grow like exp(2 L), such as
chi_square and pearson, overflow float32 in value once L > 44: no gradient
estimator can fix an infinite loss.)
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve

tfd = tfp.distributions
GE = tve.GradientEstimators


def _assert_finite(target, q, variables, importance_sample_size, sample_size=4, f=None):
    for estimator in GE:
        if estimator == GE.VIMCO and importance_sample_size < 2:
            continue
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target,
                q,
                sample_size=sample_size,
                importance_sample_size=importance_sample_size,
                discrepancy_fn=f or tve.kl_reverse,
                gradient_estimator=estimator,
                seed=(1, 2),
            )
        grads = tape.gradient(loss, variables)
        assert np.all(np.isfinite(loss)), estimator
        assert all(np.all(np.isfinite(g)) for g in grads), (estimator, grads)


@pytest.mark.parametrize("importance_sample_size", [1, 16, 10_000])
def test_log_weights_spread_over_1e4(importance_sample_size):
    loc, scale = tf.Variable(0.0), tf.Variable(1.0)
    q = tfd.Normal(loc, scale)
    _assert_finite(
        lambda z: 1e4 * tf.tanh(3.0 * z),
        q,
        [loc, scale],
        importance_sample_size,
        sample_size=1 if importance_sample_size > 100 else 4,
    )


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_extreme_surrogate_scales(scale):
    loc, s = tf.Variable(0.0), tf.Variable(scale)
    _assert_finite(tfd.Normal(1.0, 1.0).log_prob, tfd.Normal(loc, s), [loc, s], 8)


def test_kl_forward_with_large_log_weights():
    loc, scale = tf.Variable(0.0), tf.Variable(1.0)
    _assert_finite(
        lambda z: 50.0 * tf.tanh(z),
        tfd.Normal(loc, scale),
        [loc, scale],
        4,
        f=tve.kl_forward,
    )
