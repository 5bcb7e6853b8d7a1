"""Equal-time errors read off saved curves after timing the steps again."""

import dataclasses

import numpy as np
import pytest

from tfp_vi_estimators.report import (
    accuracy,
    accuracy_fits,
    accuracy_retime,
    accuracy_targets,
)
from tfp_vi_estimators.report.settings import PRESETS


def test_interpolate_curve_by_hand():
    checkpoints = [1, 10, 100]
    curve = [[1.0, None], [0.1, 0.5], [0.01, 0.05]]
    assert accuracy_retime.interpolate_curve(checkpoints, curve, 10) == [0.1, 0.5]
    # log-log: between 10 and 100 the values fall as step^-1, so at 30 they
    # are a third of those at 10.
    got = accuracy_retime.interpolate_curve(checkpoints, curve, 30)
    np.testing.assert_allclose(got, [0.1 / 3, 0.5 / 3], rtol=1e-12)
    # A neighbour that diverged gives None.
    got = accuracy_retime.interpolate_curve(checkpoints, curve, 5)
    assert got[0] == pytest.approx(0.2) and got[1] is None


def test_retime_target_keeps_the_errors_and_reads_equal_time_off_the_curve():
    settings = dataclasses.replace(PRESETS["tiny"], accuracy_steps=8)
    target = accuracy_targets.load_target("Banana")
    arms = [accuracy_fits.ARMS[0], accuracy_fits.ARMS[2]]
    seed = accuracy.fit_seed(settings.seed, "Banana", "mean-field")
    rows = accuracy.family_rows(target, "mean-field", arms, settings, seed)
    retimed = accuracy_retime.retime_target("Banana", rows, settings)
    for old, new in zip(rows, retimed, strict=True):
        assert new["seeds"] == old["seeds"] and new["equal_time_interpolated"]
        n = new["equal_time_steps"]
        assert 1 <= n <= 8 and new["step_ms"] > 0
        if n in new["checkpoints"]:
            index = new["checkpoints"].index(n)
            assert new["equal_time_mean_error"] == new["curve_mean_error"][index]
    assert max(r["equal_time_steps"] for r in retimed) == 8  # the fastest arm
