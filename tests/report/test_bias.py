"""The bias section: z-scores and tiny-run rows."""

import numpy as np

from tfp_vi_estimators.report import bias


def test_z_score():
    assert bias.z_score(np.zeros(10)) == 0.0  # identical draws
    assert bias.z_score(np.full(10, 2.0)) == np.inf
    assert bias.z_score(np.array([1.0, 3.0])) == 2.0  # mean 2, se 1


def test_tiny_report_rows(tiny_report):
    _, report = tiny_report
    rows = report["sections"]["bias"]["data"]["rows"]
    assert len(rows) == 5 * 2 * 3  # discrepancies x K x parameters
    # The decoder gradient at K = 1 is the same for every implementation.
    for r in rows:
        if r["K"] == 1 and r["variable"] == "theta":
            assert r["z_ours"] == 0.0 and r["z_tfp"] == 0.0
    model = report["sections"]["bias"]["data"]["model"]
    assert model == dict(loc=0.2, scale=0.6, theta=1.3, x=1.5, likelihood_scale=0.8)
