"""Runs the report sections and writes report.md, report.json and the plots."""

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import traceback
import typing
import warnings

from tfp_vi_estimators.report import bias, snr_vs_k, speed, stl_fig1, variance
from tfp_vi_estimators.report._common import Progress, SectionResult, to_jsonable

__all__ = ["SECTIONS", "Section", "run_report"]


class Section(typing.NamedTuple):
    """A report section: `run(settings, progress, out_dir) -> SectionResult`."""

    name: str
    run: typing.Callable


# The report, in order. To add a section, write a module with a
# `run(settings, progress, out_dir)` returning a `SectionResult` (writing its
# plots into `out_dir`) and append it here; sizes go into `Settings`.
SECTIONS = [
    Section(stl_fig1.NAME, stl_fig1.run),
    Section(snr_vs_k.NAME, snr_vs_k.run),
    Section(variance.NAME, variance.run),
    Section(bias.NAME, bias.run),
    Section(speed.NAME, speed.run),
]


def run_report(settings, out_dir, sections=None, command=None, stream=None):
    """Runs `sections` (default: all) and writes the report into `out_dir`.

    Args:
      settings: a `Settings` (see `PRESETS`).
      out_dir: directory for report.md, report.json and the PNG plots; created
        if missing.
      sections: optional list of section names, a subset of `SECTIONS`.
      command: the command line to record in the report.
      stream: text stream for progress and the summary. Default: stdout.

    Returns:
      The report as a dict (what report.json holds).
    """
    import tensorflow as tf
    import tensorflow_probability as tfp

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SECTIONS if sections is None or s.name in sections]
    progress = Progress(stream)
    progress(
        f"report ({settings.name}): {', '.join(s.name for s in chosen)} -> {out_dir}"
    )
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.get_logger().setLevel("ERROR")
        for section in chosen:
            progress.section = section.name
            progress("start")
            start = progress.elapsed()
            try:
                result = section.run(settings, progress, out_dir)
            except Exception as error:  # noqa: BLE001 - reported, the rest runs
                text = traceback.format_exc()
                progress(f"ERROR {type(error).__name__}: {error}")
                result = SectionResult(
                    section.name,
                    f"**This section failed:** `{type(error).__name__}: {error}`",
                    dict(error=f"{type(error).__name__}: {error}", traceback=text),
                    [("error", f"{type(error).__name__}: {error}")],
                    status="error",
                )
            seconds = progress.elapsed() - start
            results[section.name] = (result, seconds)
            progress(f"done in {seconds:.1f} s")
    progress.section = ""
    total = progress.elapsed()

    report = dict(
        meta=dict(
            command=command,
            preset=settings.name,
            settings=dataclasses.asdict(settings),
            started=datetime.datetime.now().isoformat(timespec="seconds"),
            total_seconds=total,
            python=sys.version.split()[0],
            tensorflow=tf.__version__,
            tensorflow_probability=tfp.__version__,
            platform=platform.platform(),
            cpus=os.cpu_count(),
        ),
        sections={
            name: dict(
                title=r.title,
                status=r.status,
                seconds=seconds,
                plots=r.plots,
                summary=[list(s) for s in r.summary],
                data=r.data,
            )
            for name, (r, seconds) in results.items()
        },
    )
    report = to_jsonable(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(_markdown(report, results))
    print("\n" + _summary_table(results), flush=True, file=stream)
    print(
        f"\nwrote {out_dir / 'report.md'}, report.json and "
        f"{sum(len(r.plots) for r, _ in results.values())} plot(s) in {total:.0f} s",
        flush=True,
        file=stream,
    )
    return report


def _summary_table(results):
    lines = ["| section | result | seconds |", "|---|---|---|"]
    for name, (result, seconds) in results.items():
        summary = result.summary or [(result.status, "")]
        for i, (label, text) in enumerate(summary):
            lines.append(
                f"| {name if i == 0 else ''} | {label}: {text} | "
                f"{f'{seconds:.0f}' if i == 0 else ''} |"
            )
    return "\n".join(lines)


def _markdown(report, results):
    meta = report["meta"]
    parts = [
        "# tfp_vi_estimators report",
        "",
        f"`{meta['command'] or 'python -m tfp_vi_estimators report'}`: preset "
        f"**{meta['preset']}**, {meta['total_seconds']:.0f} s on {meta['cpus']} "
        f"CPU(s), TensorFlow {meta['tensorflow']}, TensorFlow Probability "
        f"{meta['tensorflow_probability']}, Python {meta['python']} "
        f"({meta['started']}). All numbers are in report.json.",
        "",
        "## Summary",
        "",
        _summary_table(results),
    ]
    for name, (result, seconds) in results.items():
        parts += [
            "",
            f"## {result.title}",
            "",
            f"*Section `{name}`, {seconds:.0f} s.*",
            "",
            result.markdown,
        ]
    return "\n".join(parts) + "\n"
