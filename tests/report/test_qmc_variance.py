"""The quasi-Monte Carlo section: RQMC below iid, slopes, rendering, plot."""

import dataclasses

import numpy as np
import pytest

from tfp_vi_estimators.report import qmc_variance
from tfp_vi_estimators.report.settings import PRESETS


def test_rqmc_variance_falls_below_iid_and_faster():
    settings = dataclasses.replace(
        PRESETS["tiny"], qmc_dim=10, qmc_sample_sizes=(4, 16, 64), qmc_repeats=16
    )
    result = qmc_variance.compute(settings)
    assert [c["estimator"] for c in result.curves] == [
        "REPARAMETERIZATION",
        "DOUBLY_REPARAMETERIZED",
    ]
    for c in result.curves:
        # Expected iid / RQMC at S = 64: about 20 (the quick report). With 16
        # seeds each variance has relative standard error sqrt(2/15) = 0.37,
        # so the log of the ratio has one of about 0.52: requiring 3x leaves
        # log(20 / 3) = 1.9, 3.6 standard errors.
        assert c["rqmc"][-1] < c["iid"][-1] / 3.0, c
        # Slopes from 3 points 16x apart: standard error about 0.2 each. iid
        # within 0.5 of -1; RQMC at least 0.3 steeper (expected about 0.8).
        assert abs(c["slope_iid"] + 1.0) < 0.5, c
        assert c["slope_rqmc"] < c["slope_iid"] - 0.3, c
        assert c["ratio"] == pytest.approx(np.divide(c["iid"], c["rqmc"]))


def test_fit_slope():
    sizes = [4, 16, 64]
    assert qmc_variance.fit_slope(sizes, [3.0 / s**2 for s in sizes]) == pytest.approx(
        -2
    )
    assert qmc_variance.fit_slope(sizes, [0.0, 1.0, 0.25]) == pytest.approx(-1)
    assert np.isnan(qmc_variance.fit_slope(sizes, [0.0, 0.0, 1.0]))


def _result():
    curve = dict(
        estimator="REPARAMETERIZATION",
        sample_sizes=[4, 16],
        iid=[2.0, 0.5],
        rqmc=[1.0, 0.0625],
        iid_standard_error=[0.5, 0.125],
        rqmc_standard_error=[0.25, 0.015625],
        ratio=[2.0, 8.0],
        slope_iid=-1.0,
        slope_rqmc=-1.5,
    )
    return qmc_variance.QmcResult(10, 9, (curve,))


def test_render_summarize_and_plot(tmp_path):
    markdown = qmc_variance.render(_result())
    assert "| S | iid variance | RQMC variance | iid / RQMC |" in markdown
    assert "| 16 | 0.5 | 0.0625 | 8 |" in markdown
    assert "log-log slope iid -1, RQMC -1.5" in markdown
    assert "sqrt(2 / (R - 1)) = 0.50" in markdown
    assert qmc_variance.summarize(_result()) == [
        ("iid / RQMC (REPARAMETERIZATION)", "8 at S=16; slopes iid -1, RQMC -1.5")
    ]
    qmc_variance.plot(_result(), tmp_path / "qmc.png")
    assert (tmp_path / "qmc.png").stat().st_size > 1000


def test_tiny_report_plot(tiny_report):
    out, report = tiny_report
    section = report["sections"]["qmc_variance"]
    assert section["status"] == "ok" and section["plots"] == ["qmc_variance.png"]
    assert (out / "qmc_variance.png").stat().st_size > 1000
    assert len(section["data"]["curves"]) == 2
