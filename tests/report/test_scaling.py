"""The growth sweeps: log-log slopes, the memory sweep, the plot."""

import math

import pytest

from tfp_vi_estimators.report import scaling


def test_log_log_slope():
    assert scaling.log_log_slope([1, 10, 100], [3.0, 30.0, 300.0]) == pytest.approx(1)
    assert scaling.log_log_slope([1, 4], [2.0, 1.0]) == pytest.approx(-0.5)
    # Zero (a streamed memory increase can be 0) and NaN are left out.
    assert math.isnan(scaling.log_log_slope([1, 4], [0.0, 1.0]))


def test_draws_memory_rows_and_plot(tmp_path):
    rows = scaling.draws_memory([4, 8], chunk_size=4)
    assert [r["num_draws"] for r in rows] == [4, 8]
    for r in rows:
        assert r["streamed_mb"] >= 0 and r["all_at_once_mb"] >= 0
        assert r["streamed_s"] > 0 and r["all_at_once_s"] > 0
    step_rows = [
        dict(axis=axis, size=size, ours_ms=float(size), tfp_ms=float(size))
        for axis in ("sample_size", "dimension")
        for size in (2, 4)
    ]
    scaling.plot(step_rows, rows, tmp_path / "growth.png")
    assert (tmp_path / "growth.png").stat().st_size > 1000
