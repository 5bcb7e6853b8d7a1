"""The SNR-against-K section: debiased SNR, slopes, tiny-run numbers."""

import numpy as np
import pytest

from tfp_vi_estimators.report import snr_vs_k


def test_debiased_snr_and_slope():
    rng = np.random.default_rng(0)
    draws = 4000
    true_snr = np.array([0.05, 0.1, 0.2])
    samples = true_snr + rng.normal(size=(draws, 3))
    snr = snr_vs_k.debiased_rms_snr(samples.mean(0), samples.var(0, ddof=1), draws)
    assert abs(snr - np.sqrt(np.mean(true_snr**2))) < 0.02
    # Pure noise: the plain estimate sits near 1/sqrt(draws) = 0.016, the
    # debiased one near 0 (NaN when the debiased square is negative).
    noise = rng.normal(size=(draws, 50))
    snr = snr_vs_k.debiased_rms_snr(noise.mean(0), noise.var(0, ddof=1), draws)
    assert np.isnan(snr) or snr < 0.5 / np.sqrt(draws), snr
    ks = [1, 4, 16, 64]
    assert snr_vs_k.fit_slope(ks, [2.0 * k**-0.5 for k in ks]) == pytest.approx(-0.5)
    assert snr_vs_k.fit_slope(ks, [np.nan, 1.0, 2.0, 4.0]) == pytest.approx(0.5)
    assert np.isnan(snr_vs_k.fit_slope(ks, [np.nan] * 4))


def test_tiny_report_points(tiny_report):
    _, report = tiny_report
    points = report["sections"]["snr_vs_k"]["data"]["points"]
    assert {p["estimator"] for p in points} == {
        "REPARAMETERIZATION",
        "DOUBLY_REPARAMETERIZED",
        "VIMCO",
        "SCORE_FUNCTION",
    }
    assert all(p["K"] >= 2 for p in points if p["estimator"] == "VIMCO")


def _result(snrs):
    """A result with the `A` SNR `snrs[estimator][K]`, the `b` SNR 1."""
    points = [
        dict(estimator=estimator, label=estimator, K=k, snr_A=value, snr_b=1.0)
        for estimator, by_k in snrs.items()
        for k, value in by_k.items()
    ]
    slopes = snr_vs_k.fit_slopes(points, ("A", "b"), floor=0.01)
    return snr_vs_k.SnrResult(2, 3, 0.1, 10_000, (1, 4), ("A", "b"), points, slopes)


def test_render_marks_values_below_the_noise_floor():
    result = _result(
        {
            "REPARAMETERIZATION": {1: 0.2, 4: 0.1},
            "DOUBLY_REPARAMETERIZED": {1: 0.4, 4: 0.8},
            "VIMCO": {4: 0.3},
            "SCORE_FUNCTION": {1: 0.005, 4: float("nan")},
        }
    )
    markdown = snr_vs_k.render(result)
    assert "noise floor 1/sqrt(draws) = 0.01)" in markdown
    assert "| IWAE (REPARAMETERIZATION) | 0.2 | 0.1 |" in markdown
    assert "| VIMCO | - | 0.3 |" in markdown
    assert "| SCORE_FUNCTION | (0.005) | - |" in markdown  # below the floor
    assert "| DReG (DOUBLY_REPARAMETERIZED) | 0.5 | 0.5 |" in markdown  # slopes
    assert snr_vs_k.summarize(result) == [
        (
            "SNR slopes (A)",
            "REPARAMETERIZATION -0.5, DOUBLY_REPARAMETERIZED 0.5, VIMCO -",
        )
    ]
