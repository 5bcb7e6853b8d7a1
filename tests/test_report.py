"""The report command: a tiny run end to end, flag validation, helpers.

The tiny preset runs every section and code path with a handful of steps and
draws (about 40 s here); its numbers mean nothing. The `--quick` and full
runs are not part of the default tests.
"""

import json

import numpy as np
import pytest

from tfp_vi_estimators.report import _common, cli, run, snr_vs_k

SECTION_NAMES = [s.name for s in run.SECTIONS]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = cli.main(["--tiny", "--out", str(out)])
    return out, report


def test_tiny_report_writes_markdown_json_and_plots(tiny_report):
    out, report = tiny_report
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    assert list(on_disk["sections"]) == SECTION_NAMES
    for name, section in on_disk["sections"].items():
        assert section["status"] == "ok", (name, section["data"])
        assert section["data"], name
        for plot in section["plots"]:
            assert (out / plot).stat().st_size > 1000, plot
    assert (out / "stl_fig1.png").is_file()
    assert (out / "snr_vs_k.png").is_file()
    markdown = (out / "report.md").read_text()
    for section in on_disk["sections"].values():
        assert f"## {section['title']}" in markdown
    assert on_disk["meta"]["preset"] == "tiny"


def test_tiny_report_numbers(tiny_report):
    _, report = tiny_report
    sections = report["sections"]
    fig1 = sections["stl_fig1"]["data"]
    assert {r["optimizer"] for r in fig1["results"]} == {"SGD", "Adam"}
    for curve in fig1["curves"]:
        assert len(curve["kl"]) == len(curve["steps"])
        assert curve["kl"][-1] < curve["kl"][0]  # both estimators make progress
    points = sections["snr_vs_k"]["data"]["points"]
    assert {p["estimator"] for p in points} == {
        "REPARAMETERIZATION",
        "DOUBLY_REPARAMETERIZED",
        "VIMCO",
        "SCORE_FUNCTION",
    }
    assert all(p["K"] >= 2 for p in points if p["estimator"] == "VIMCO")
    rows = sections["bias"]["data"]["rows"]
    assert len(rows) == 5 * 2 * 3  # discrepancies x K x parameters
    # The decoder gradient at K = 1 is the same for every implementation.
    for r in rows:
        if r["K"] == 1 and r["variable"] == "theta":
            assert r["z_ours"] == 0.0 and r["z_tfp"] == 0.0
    assert sections["variance"]["data"]["problems"]
    assert sections["speed"]["data"]["rows"][0]["ours_ms"] > 0


def test_progress_lines_and_summary(tmp_path, capsys):
    cli.main(["--tiny", "--sections", "bias", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "] bias: start" in printed
    assert "] bias: done in" in printed
    assert "| bias | largest abs z" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["sections"]) == ["bias"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--quick", "--tiny"], "not allowed with argument"),
        (["--sections", "nope"], "--sections: unknown nope"),
        (["--sections", ","], "--sections: unknown (empty)"),
        (["--seed", "-1"], "--seed must be non-negative"),
        (["--seed", "x"], "invalid int value"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_must_not_be_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(SystemExit):
        cli.main(["--out", str(path)])
    assert "is not a directory" in capsys.readouterr().err


def test_failed_section_is_reported_and_exits_1(tmp_path, monkeypatch, capsys):
    def boom(settings, progress, out_dir):
        raise RuntimeError("kaput")

    def fine(settings, progress, out_dir):
        return _common.SectionResult("Fine", "text", dict(x=float("nan")))

    monkeypatch.setattr(
        run, "SECTIONS", [run.Section("boom", boom), run.Section("fine", fine)]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--tiny", "--out", str(tmp_path)])
    assert exit_info.value.code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sections"]["boom"]["status"] == "error"
    assert "kaput" in report["sections"]["boom"]["data"]["error"]
    assert report["sections"]["fine"]["data"] == {"x": None}  # NaN -> null
    assert "section(s) failed: boom" in capsys.readouterr().err


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
