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

__all__ = ["footer", "report_dict", "report_markdown", "summary_table"]


def report_dict(
    settings, results, total_seconds, command=None, usages=None, final_usage=None
):
    """What report.json holds: run metadata and every section's numbers.

    `usages` (`{name: memory.Usage}` after each section) and `final_usage`
    (a `memory.Usage` at the end) add the peak resident memory and CPU time.
    """
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
    if final_usage is not None:
        meta.update(
            peak_rss_mb=final_usage.peak_rss_mb,
            children_peak_rss_mb=final_usage.children_peak_rss_mb,
            cpu_seconds=final_usage.cpu_seconds,
        )
    usages = usages or {}
    sections = {
        name: dict(
            title=r.title,
            status=r.status,
            seconds=seconds,
            plots=r.plots,
            summary=[list(s) for s in r.summary],
            data=r.data,
            **_usage_fields(usages.get(name)),
        )
        for name, (r, seconds) in results.items()
    }
    return to_jsonable(dict(meta=meta, sections=sections))


def _usage_fields(usage):
    """A section's memory fields in report.json (none if not measured)."""
    if usage is None:
        return {}
    return dict(peak_rss_mb_so_far=usage.peak_rss_mb, rss_mb_after=usage.current_rss_mb)


def summary_table(results, peaks=None):
    """A Markdown table: each section's summary lines, seconds and peak memory.

    `peaks` is `{name: MB}`, the process's peak resident memory after each
    section; it never falls, so a section that raises it is one that needed it.
    """
    peaks = peaks or {}
    lines = [
        "| section | result | seconds | peak resident MB so far |",
        "|---|---|---|---|",
    ]
    for name, (result, seconds) in results.items():
        summary = result.summary or [(result.status, "")]
        peak = f"{peaks[name]:.0f}" if peaks.get(name) is not None else "-"
        for i, (label, text) in enumerate(summary):
            first = i == 0
            lines.append(
                f"| {name if first else ''} | {label}: {text} | "
                f"{f'{seconds:.0f}' if first else ''} | {peak if first else ''} |"
            )
    return "\n".join(lines)


def footer(meta):
    """The line that ends the report: peak resident memory, wall and CPU time."""
    if meta.get("peak_rss_mb") is None:
        return ""
    return (
        f"Peak resident memory: {meta['peak_rss_mb']:.0f} MB (this process; "
        f"largest child process {meta['children_peak_rss_mb']:.0f} MB). Wall "
        f"time {meta['total_seconds']:.0f} s, CPU time {meta['cpu_seconds']:.0f} s "
        f"on {meta['cpus']} CPU(s)."
    )


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
        summary_table(
            results,
            {n: s.get("peak_rss_mb_so_far") for n, s in report["sections"].items()},
        ),
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
    parts += ["", "---", "", footer(meta)]
    return "\n".join(parts) + "\n"
