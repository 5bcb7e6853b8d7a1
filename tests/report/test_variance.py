"""The variance section: tiny-run tables."""


def test_tiny_report_tables(tiny_report):
    _, report = tiny_report
    data = report["sections"]["variance"]["data"]
    names = [p["name"] for p in data["problems"]]
    assert names == ["gaussian-5d", "mixed-normal-bernoulli", "mixture-3"]
    for problem in data["problems"]:
        assert problem["rows"]
        assert all(r["problem"] == problem["name"] for r in problem["rows"])
