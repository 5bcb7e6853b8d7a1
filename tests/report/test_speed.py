"""The speed section, its timing harness and its growth sweeps."""

import pytest

from tfp_vi_estimators.report import speed, timing


def test_tiny_report_rows(tiny_report):
    _, report = tiny_report
    rows = report["sections"]["speed"]["data"]["rows"]
    assert [(r["problem"], r["estimator"]) for r in rows] == [
        ("gaussian-40d", "DOUBLY_REPARAMETERIZED")
    ]
    assert rows[0]["ours_ms"] > 0 and rows[0]["tfp_ms"] > 0
    assert rows[0]["ours_compile_s"] > 0 and rows[0]["tfp_compile_s"] > 0
    data = report["sections"]["speed"]["data"]
    assert {r["axis"] for r in data["scaling"]} == {"sample_size", "dimension"}
    assert [r["num_draws"] for r in data["memory"]] == [8]
    assert data["memory"][0]["streamed_s"] > 0
    assert report["sections"]["speed"]["plots"] == ["speed.png"]


def test_render_refused_configuration():
    rows = (
        dict(problem="p", S=4, K=2, estimator="VIMCO", ours_ms=2.0, tfp_ms=1.0),
        dict(problem="p", S=4, K=2, estimator="SCORE_FUNCTION", ours_ms=3.0),
    )
    rows[0]["ratio"] = 2.0
    rows[1].update(tfp_ms=None, ratio=None)
    result = speed.SpeedResult(rounds=1, steps=2, rows=rows, median_ratio=2.0)
    markdown = speed.render(result)
    assert "| p | 4 | 2 | VIMCO | 2 | 1 | 2 |" in markdown
    assert "| p | 4 | 2 | SCORE_FUNCTION | 3 | refused | - |" in markdown
    assert (
        timing.format_row(rows[1])
        == "| p | 4 | 2 | SCORE_FUNCTION | 3.00 | refused | - | - | - |"
    )
    rows[0].update(ours_compile_s=1.25, tfp_compile_s=2.0)
    assert timing.format_row(rows[0]).endswith("| 2.00 | 1.00 | 2.00 | 1.2 | 2.0 |")
    assert timing.HEADER.count("|---") == timing.format_row(rows[0]).count(" | ") + 1
    assert speed.summarize(result) == [("median ours / tfp.vi step time", "2")]


def test_tfp_support():
    GE = timing.GE
    assert timing.supported_by_tfp(GE.SCORE_FUNCTION, 1)
    assert not timing.supported_by_tfp(GE.SCORE_FUNCTION, 4)
    assert not timing.supported_by_tfp(GE.VIMCO, 1)
    assert timing.supported_by_tfp(GE.DOUBLY_REPARAMETERIZED, 4)


def test_render_growth_tables():
    step_rows = [
        dict(axis=axis, size=size, ours_ms=ms, tfp_ms=2 * ms, ours_compile_s=1.0)
        | dict(tfp_compile_s=2.0)
        for axis, size, ms in (("sample_size", 16, 1.0), ("sample_size", 64, 4.0))
    ]
    memory_rows = [
        dict(num_draws=n, streamed_mb=5.0, all_at_once_mb=n / 10)
        | dict(streamed_s=1.0, all_at_once_s=1.0)
        for n in (100, 1000)
    ]
    slopes = speed.growth_slopes(step_rows, memory_rows)
    assert slopes["ours_sample_size"] == pytest.approx(1.0)
    assert slopes["streamed_draws"] == pytest.approx(0.0, abs=1e-12)
    assert slopes["all_at_once_draws"] == pytest.approx(1.0)
    result = speed.SpeedResult(1, 2, (), float("nan"), step_rows, memory_rows, slopes)
    markdown = speed.render(result)
    assert "| sample_size | 64 | 4 | 8 | 1 | 2 |" in markdown
    assert "| 1000 | 5 | 100 | 1 | 1 |" in markdown
    assert "streamed_draws 0.00, all_at_once_draws 1.00." in markdown
    assert "ours_dimension -" in markdown  # no dimension sweep: no slope
    assert speed.summarize(result)[1] == (
        "diagnostics memory at 1000 draws",
        "streamed +5 MB, all at once +100 MB",
    )
