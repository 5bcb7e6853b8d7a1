"""The Dirichlet copula and the antithetic Bernoulli draws it gives.

Empirical frequencies are compared with the stated probabilities in standard
errors of a Bernoulli frequency, within `Z_TOLERANCE` (4.5; see `stat_helpers`).
"""

import numpy as np
import pytest
import tensorflow as tf
from stat_helpers import Z_TOLERANCE

from tfp_vi_estimators._internal import discrete_couplings as dc

NUM = 200_000


def _frequency_z(hits, probability):
    return (hits.mean() - probability) / np.sqrt(
        probability * (1 - probability) / hits.size
    )


@pytest.mark.parametrize("group_size", [2, 3, 5])
def test_copula_uniforms_are_uniform_and_pairs_follow_the_copula(group_size):
    u = dc.dirichlet_copula_uniforms(
        NUM, group_size, tf.constant([], tf.int32), tf.float64, seed=(1, 2)
    ).numpy()
    assert u.shape == (NUM, group_size)
    for level in (0.1, 0.5, 0.8):
        assert abs(_frequency_z(u[:, 0] < level, level)) < Z_TOLERANCE
        n = group_size - 1.0
        both = max(0.0, 2 * level ** (1 / n) - 1) ** n  # C(s, s)
        if 0 < both < 1:
            assert (
                abs(_frequency_z((u[:, 0] < level) & (u[:, 1] < level), both))
                < Z_TOLERANCE
            )
        else:
            assert not np.any((u[:, 0] < level) & (u[:, 1] < level))
    if group_size == 2:
        np.testing.assert_allclose(u[:, 0] + u[:, 1], 1.0, atol=1e-12)


@pytest.mark.parametrize("group_size", [2, 4])
@pytest.mark.parametrize("logit", [-1.5, 0.3, 2.2])
def test_antithetic_bernoulli_marginal_and_correlation(group_size, logit):
    u = dc.dirichlet_copula_uniforms(
        NUM, group_size, tf.constant([], tf.int32), tf.float64, seed=(3, 4)
    )
    logits = tf.constant(logit, tf.float64)
    b = dc.antithetic_bernoulli(u, logits).numpy()
    p = 1 / (1 + np.exp(-logit))
    assert abs(_frequency_z(b[:, 0], p)) < Z_TOLERANCE
    # 1 / (1 - rho) from the copula against the empirical correlation.
    rho = np.corrcoef(b[:, 0], b[:, 1])[0, 1]
    correction = dc.antithetic_correction(logits, group_size).numpy()
    # The standard error of a correlation is below 1 / sqrt(NUM) = 0.0022.
    assert abs(rho - (1 - 1 / correction)) < Z_TOLERANCE / np.sqrt(NUM)
    assert rho < 0


def test_coupled_categorical_marginals_and_pairs_never_both_rare():
    logits = tf.constant([0.3, -1.0, 1.2, 0.1], tf.float64)
    probs = tf.nn.softmax(logits).numpy()
    u = dc.dirichlet_copula_uniforms(NUM, 2, tf.constant([3]), tf.float64, seed=(5, 6))
    one_hot = dc.coupled_categorical(u, logits).numpy()  # [NUM, 2, 4]
    for c in range(4):
        assert abs(_frequency_z(one_hot[:, 0, c], probs[c])) < Z_TOLERANCE
        assert abs(_frequency_z(one_hot[:, 1, c], probs[c])) < Z_TOLERANCE
    rarest = int(np.argmin(probs))
    assert not np.any(one_hot[:, 0, rarest] * one_hot[:, 1, rarest])
