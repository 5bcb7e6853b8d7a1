"""Csiszar functions are tfp.vi's own; their derivatives match closed forms."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.csiszar import CSISZAR_FUNCTIONS, discrepancy_derivatives


@pytest.mark.parametrize("name", CSISZAR_FUNCTIONS)
def test_every_tfp_vi_csiszar_function_is_reexported_unchanged(name):
    assert getattr(tve, name) is getattr(tfp.vi, name)


def test_no_tfp_vi_csiszar_function_is_missing():
    public = {n for n in dir(tfp.vi) if not n.startswith("_")}
    not_discrepancies = {
        "GradientEstimators",
        "csiszar_vimco",
        "fit_surrogate_posterior",
        "fit_surrogate_posterior_stateless",
        "monte_carlo_variational_loss",
        "mutual_information",
    }
    assert public - not_discrepancies == set(CSISZAR_FUNCTIONS)


T = np.array([-3.0, -1.0, -0.2, 0.0, 0.7, 2.0])
CLOSED_FORMS = {
    # f(t) = F(e^t); f1 = F'(u) u; f2 = F''(u) u^2 + F'(u) u.
    "kl_reverse": (lambda t: -np.ones_like(t), lambda t: np.zeros_like(t)),
    "kl_forward": (lambda t: np.exp(t) * (t + 1), lambda t: np.exp(t) * (t + 2)),
    "chi_square": (lambda t: 2 * np.exp(2 * t), lambda t: 4 * np.exp(2 * t)),  # u^2 - 1
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_derivatives_match_closed_forms(name):
    f1, f2 = discrepancy_derivatives(getattr(tve, name), tf.constant(T, tf.float64))
    np.testing.assert_allclose(f1, CLOSED_FORMS[name][0](T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f2, CLOSED_FORMS[name][1](T), rtol=1e-12, atol=1e-12)


def test_derivatives_carry_no_gradient():
    t = tf.Variable(T)
    with tf.GradientTape() as tape:
        f1, f2 = discrepancy_derivatives(tve.kl_forward, t)
        total = tf.reduce_sum(f1 + f2)
    assert tape.gradient(total, t) is None
