"""The speed section and its timing harness."""

from tfp_vi_estimators.report import speed, timing


def test_tiny_report_rows(tiny_report):
    _, report = tiny_report
    rows = report["sections"]["speed"]["data"]["rows"]
    assert [(r["problem"], r["estimator"]) for r in rows] == [
        ("gaussian-40d", "DOUBLY_REPARAMETERIZED")
    ]
    assert rows[0]["ours_ms"] > 0 and rows[0]["tfp_ms"] > 0


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
        == "| p | 4 | 2 | SCORE_FUNCTION | 3.00 | refused | - |"
    )
    assert speed.summarize(result) == [("median ours / tfp.vi step time", "2")]


def test_tfp_support():
    GE = timing.GE
    assert timing.supported_by_tfp(GE.SCORE_FUNCTION, 1)
    assert not timing.supported_by_tfp(GE.SCORE_FUNCTION, 4)
    assert not timing.supported_by_tfp(GE.VIMCO, 1)
    assert timing.supported_by_tfp(GE.DOUBLY_REPARAMETERIZED, 4)
