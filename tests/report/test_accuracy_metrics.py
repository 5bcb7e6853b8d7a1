"""The accuracy metrics: hand-computed medians, exact moments of q in the
constrained space (closed form and draws), and the Gaussian marginals of each
surrogate family."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.report import accuracy_metrics, accuracy_targets

tfb = tfp.bijectors

# Standard errors allowed between a quadrature (exact) value and the mean of
# draws: the largest of the 2 x 3 x 3 comparisons below is a maximum of 18
# near-normal z-scores, above 4.5 with probability about 1e-4.
Z_BOUND = 4.5


def test_standardized_mean_error_by_hand():
    # |mean - truth| / sd: [1, 0.5, 2] -> median 1; [0, 1.5, 1] -> median 1.
    mean = np.array([[1.0, 2.0, 4.0], [0.0, 6.0, -2.0]])
    truth, sd = np.zeros(3), np.array([1.0, 4.0, 2.0])
    got = accuracy_metrics.standardized_mean_error(mean, truth, sd).numpy()
    np.testing.assert_allclose(got, [1.0, 1.0], rtol=1e-6)


def test_median_of_an_even_count_is_the_midpoint():
    # [1, 2, 3, 10] / 1 -> median (2 + 3) / 2.
    got = accuracy_metrics.standardized_mean_error(
        np.array([1.0, 2.0, 3.0, 10.0]), np.zeros(4), np.ones(4)
    )
    assert float(got) == pytest.approx(2.5)


def test_sd_log_ratio_by_hand():
    # |log(sd / truth)| = [log 2, 0, log 2, log 4] -> median (log 2 + log 2) / 2.
    got = accuracy_metrics.sd_log_ratio(
        np.array([2.0, 1.0, 0.5, 4.0]), np.ones(4)
    ).numpy()
    assert got == pytest.approx(np.log(2.0))


def test_constrained_moments_of_exp_are_the_log_normal_ones():
    # E exp(u) = exp(m + s^2 / 2), sd = sqrt(exp(s^2) - 1) exp(m + s^2 / 2);
    # 32 Gauss-Hermite nodes are exact to float32 rounding here (the omitted
    # Taylor terms of exp(s t) are below (s^2)^32 / 64! ~ 1e-70).
    m = np.array([[0.3, -1.0, 2.0]], np.float32)
    s = np.array([[0.5, 1.5, 0.1]], np.float32)
    mean, sd = accuracy_metrics.constrained_moments(m, s, tfb.Exp())
    expected = np.exp(m + s**2 / 2)
    np.testing.assert_allclose(mean, expected, rtol=1e-5)
    np.testing.assert_allclose(sd, np.sqrt(np.expm1(s**2)) * expected, rtol=1e-5)


def test_constrained_moments_of_identity_are_loc_and_scale():
    m, s = np.array([1.0, -2.0], np.float32), np.array([0.5, 3.0], np.float32)
    mean, sd = accuracy_metrics.constrained_moments(m, s, tfb.Identity())
    np.testing.assert_allclose(mean, m, atol=1e-6)
    np.testing.assert_allclose(sd, s, rtol=1e-5)


def _draw_moments(draws):
    """Mean and sd of draws along axis 0, with their standard errors."""
    n = draws.shape[0]
    mean, sd = draws.mean(0), draws.std(0)
    squares = (draws - mean) ** 2
    # Delta method: se(sd) = se(variance) / (2 sd).
    sd_se = squares.std(0) / np.sqrt(n) / (2 * sd)
    return mean, sd, sd / np.sqrt(n), sd_se


@pytest.mark.parametrize("family", accuracy_targets.FAMILIES)
def test_moments_of_each_family_match_draws(family):
    # A non-trivial surrogate of each family (its variables moved off their
    # initial values), pushed through an elementwise bijector with Softplus
    # and Sigmoid parts: the exact moments lie within Z_BOUND standard errors
    # of those of 200,000 draws.
    dim, batch = 3, 2
    surrogate = accuracy_targets.make_surrogate(family, dim, batch, seed=(4, 5))
    rng = np.random.default_rng(0)
    for v in surrogate.trainable_variables:
        v.assign(v + rng.normal(scale=0.3, size=v.shape).astype(np.float32))
    bijector = tfb.Blockwise([tfb.Softplus(), tfb.Sigmoid(), tfb.Identity()], [1, 1, 1])
    mean, sd = accuracy_metrics.constrained_moments(
        *accuracy_metrics.gaussian_marginals(surrogate), bijector
    )
    draws = bijector.forward(surrogate.sample(200_000, seed=(6, 7))).numpy()
    draws = draws.astype(np.float64)
    draw_mean, draw_sd, mean_se, sd_se = _draw_moments(draws)
    assert np.all(np.abs(mean.numpy() - draw_mean) < Z_BOUND * mean_se)
    assert np.all(np.abs(sd.numpy() - draw_sd) < Z_BOUND * sd_se)


def test_errors_of_a_surrogate_equal_to_the_truth_are_zero():
    # A mean-field q whose marginals are the truth's, through the identity.
    target = accuracy_targets.GymTarget(
        "normal", 2, None, tfb.Identity(), np.array([1.0, -3.0]), np.array([2.0, 0.5])
    )
    surrogate = accuracy_targets.make_surrogate("mean-field", 2, 1, seed=(0, 0))
    surrogate.distribution.loc.assign([[1.0, -3.0]])
    surrogate.distribution.scale.assign([[2.0, 0.5]])
    mean_error, sd_log_ratio = accuracy_metrics.errors(surrogate, target)
    np.testing.assert_allclose(mean_error, [0.0], atol=1e-6)
    np.testing.assert_allclose(sd_log_ratio, [0.0], atol=1e-5)


def test_errors_run_under_xla():
    target = accuracy_targets.GymTarget(
        "normal", 2, None, tfb.Exp(), np.array([1.0, 2.0]), np.array([0.5, 1.0])
    )
    surrogate = accuracy_targets.make_surrogate("full-rank", 2, 3, seed=(0, 0))
    compiled = tf.function(
        lambda: accuracy_metrics.errors(surrogate, target), jit_compile=True
    )
    for got, want in zip(
        compiled(), accuracy_metrics.errors(surrogate, target), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5)
