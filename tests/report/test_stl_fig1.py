"""The sticking-the-landing section: tiny-run curves, rendering."""

from tfp_vi_estimators.report import stl_fig1


def test_tiny_report_curves(tiny_report):
    _, report = tiny_report
    fig1 = report["sections"]["stl_fig1"]["data"]
    assert {r["optimizer"] for r in fig1["results"]} == {"SGD", "Adam"}
    for curve in fig1["curves"]:
        assert len(curve["kl"]) == len(curve["steps"])
        assert curve["kl"][-1] < curve["kl"][0]  # both estimators make progress


def test_compare_curves_and_render():
    curves = [
        dict(
            optimizer="SGD",
            learning_rate=0.5,
            estimator=estimator.name,
            label=label,
            steps=[0, 10, 20],
            kl=kl,
        )
        for (label, estimator), kl in zip(
            stl_fig1.ESTIMATORS.items(),
            ([8.0, 2.0, 2.0], [8.0, 1.0, 0.25]),
            strict=True,
        )
    ]
    row = stl_fig1.compare_curves(curves, "SGD")
    assert row["final_kl_total"] == 2.0 and row["final_kl_path"] == 0.25
    assert row["ratio_total_over_path"] == 8.0
    assert row["halving_gain_total"] == 1.0 and row["halving_gain_path"] == 4.0
    result = stl_fig1.Fig1Result(3, 12.5, 10, (row,), tuple(curves))
    assert "| SGD(0.5) | 20 | 2 | 0.25 | 8 | 1x | 4x |" in stl_fig1.render(result)
    assert "3-d Gaussian" in stl_fig1.render(result)
    assert stl_fig1.summarize(result) == [
        ("final KL (SGD)", "total 2, path 0.25, ratio 8")
    ]
