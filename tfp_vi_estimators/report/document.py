"""The report's documents: report.json (as a dict), report.md and the summary.

`results` below is a dict `{section name: (SectionResult, seconds)}` in the
report's order.
"""

import dataclasses
import datetime
import os
import platform
import sys

from tfp_vi_estimators.report.formatting import to_jsonable

__all__ = ["report_dict", "report_markdown", "summary_table"]


def report_dict(settings, results, total_seconds, command=None):
    """What report.json holds: run metadata and every section's numbers."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    meta = dict(
        command=command,
        preset=settings.name,
        settings=dataclasses.asdict(settings),
        started=datetime.datetime.now().isoformat(timespec="seconds"),
        total_seconds=total_seconds,
        python=sys.version.split()[0],
        tensorflow=tf.__version__,
        tensorflow_probability=tfp.__version__,
        platform=platform.platform(),
        cpus=os.cpu_count(),
    )
    sections = {
        name: dict(
            title=r.title,
            status=r.status,
            seconds=seconds,
            plots=r.plots,
            summary=[list(s) for s in r.summary],
            data=r.data,
        )
        for name, (r, seconds) in results.items()
    }
    return to_jsonable(dict(meta=meta, sections=sections))


def summary_table(results):
    """A Markdown table: each section's summary lines and seconds."""
    lines = ["| section | result | seconds |", "|---|---|---|"]
    for name, (result, seconds) in results.items():
        summary = result.summary or [(result.status, "")]
        for i, (label, text) in enumerate(summary):
            lines.append(
                f"| {name if i == 0 else ''} | {label}: {text} | "
                f"{f'{seconds:.0f}' if i == 0 else ''} |"
            )
    return "\n".join(lines)


def report_markdown(report, results):
    """report.md: a header with the run's metadata, the summary, every section."""
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
        summary_table(results),
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
