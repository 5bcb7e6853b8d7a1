"""The report runner: files written, progress, failed sections."""

import dataclasses
import json

import pytest

from tfp_vi_estimators.report import cli, document, run
from tfp_vi_estimators.report.section import Section

SECTION_NAMES = [s.name for s in run.SECTIONS]


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
    assert on_disk["sections"]["stl_fig1"]["plots"] == ["stl_fig1.png"]
    assert on_disk["sections"]["snr_vs_k"]["plots"] == ["snr_vs_k.png"]
    markdown = (out / "report.md").read_text()
    for section in on_disk["sections"].values():
        assert f"## {section['title']}" in markdown
    assert "![KL against steps](stl_fig1.png)" in markdown
    assert "![SNR against K](snr_vs_k.png)" in markdown
    assert on_disk["meta"]["preset"] == "tiny"
    assert on_disk["sections"]["speed"]["plots"] == ["speed.png"]
    assert "![log-log growth of cost](speed.png)" in markdown
    # The footer: the process's peak resident memory and CPU time.
    meta = on_disk["meta"]
    assert meta["peak_rss_mb"] > 0 and meta["cpu_seconds"] > 0
    assert markdown.rstrip().endswith(document.footer(meta))
    peaks = [s["peak_rss_mb_so_far"] for s in on_disk["sections"].values()]
    assert peaks == sorted(peaks) and peaks[-1] <= meta["peak_rss_mb"]


def test_progress_lines_and_summary(tmp_path, capsys):
    cli.main(["--tiny", "--sections", "bias", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "] bias: start" in printed
    assert "] bias: done in" in printed
    assert "| bias | largest abs z" in printed
    assert "Peak resident memory:" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["sections"]) == ["bias"]


@dataclasses.dataclass(frozen=True)
class _Result:
    x: float


def _section(name, compute):
    return Section(name, name.title(), compute, lambda r: "text", lambda r: [])


def test_failed_section_is_reported_and_exits_1(tmp_path, monkeypatch, capsys):
    def boom(settings, progress):
        raise RuntimeError("kaput")

    def fine(settings, progress):
        return _Result(float("nan"))

    monkeypatch.setattr(
        run, "SECTIONS", [_section("boom", boom), _section("fine", fine)]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--tiny", "--out", str(tmp_path)])
    assert exit_info.value.code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sections"]["boom"]["status"] == "error"
    assert "kaput" in report["sections"]["boom"]["data"]["error"]
    assert "RuntimeError" in report["sections"]["boom"]["data"]["traceback"]
    assert report["sections"]["fine"]["data"] == {"x": None}  # NaN -> null
    assert "section(s) failed: boom" in capsys.readouterr().err
