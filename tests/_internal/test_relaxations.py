"""Relaxations drawn given the discrete value have the unconditional law.

Drawing b ~ q and then z ~ p(z | b) must give z the law of `a + noise`; its
CDF at a few points is compared with the exact one in standard errors
(`Z_TOLERANCE`, 4.5, see `stat_helpers`).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from stat_helpers import Z_TOLERANCE

from tfp_vi_estimators._internal import relaxations

tfd = tfp.distributions
NUM = 200_000


def _z(hits, probability):
    return (hits.mean() - probability) / np.sqrt(
        probability * (1 - probability) / hits.size
    )


def test_conditional_logistic_has_the_logistic_law_and_the_right_sign():
    logit = tf.constant(0.7, tf.float64)
    b = tfd.Bernoulli(logits=logit, dtype=tf.float64).sample(NUM, seed=(1, 2))
    v = tf.random.stateless_uniform([NUM], (3, 4), dtype=tf.float64)
    z = relaxations.conditional(logit, b, v, categorical=False).numpy()
    assert np.all((z > 0) == (b.numpy() > 0.5))
    for t in (-1.0, 0.5, 2.0):
        assert abs(_z(z < t, 1 / (1 + np.exp(-(t - 0.7))))) < Z_TOLERANCE


def test_conditional_gumbel_has_the_gumbel_law_and_the_right_arg_max():
    logits = tf.constant([0.2, -0.5, 1.0], tf.float64)
    log_probs = tf.math.log_softmax(logits).numpy()
    b = tfd.OneHotCategorical(logits=logits, dtype=tf.float64).sample(NUM, seed=(1, 2))
    v = tf.random.stateless_uniform([NUM, 3], (3, 4), dtype=tf.float64)
    z = relaxations.conditional(logits, b, v, categorical=True).numpy()
    np.testing.assert_array_equal(np.argmax(z, -1), np.argmax(b.numpy(), -1))
    for c in range(3):
        for t in (-1.0, 0.5, 2.0):
            exact = np.exp(-np.exp(-(t - log_probs[c])))  # Gumbel(log p_c) CDF
            assert abs(_z(z[:, c] < t, exact)) < Z_TOLERANCE


def test_unconditional_path_has_unit_slope_in_the_canonical_logits():
    logits = tf.constant([0.2, -0.5, 1.0], tf.float64)
    z = tf.constant([1.0, 2.0, 3.0], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        path = relaxations.unconditional_path(z, logits, categorical=False)
    np.testing.assert_array_equal(path.numpy(), z.numpy())
    np.testing.assert_array_equal(tape.gradient(path, logits).numpy(), [1.0, 1.0, 1.0])


def test_conditional_sigmoid_is_the_sigmoid_of_the_conditional_draw():
    logits = tf.constant([-3.0, -0.2, 0.0, 1.5, 6.0], tf.float64)
    values = tf.constant([1.0, 0.0, 1.0, 0.0, 1.0], tf.float64)
    v = tf.random.stateless_uniform([7, 5], (5, 6), dtype=tf.float64)
    z = relaxations.conditional(logits, values, v, categorical=False)
    np.testing.assert_allclose(
        relaxations.conditional_sigmoid(logits, values, v, 0.3),
        tf.sigmoid(z / 0.3),
        rtol=1e-12,
    )
