"""Runs the report sections and writes report.md, report.json and the plots."""

import dataclasses
import json
import pathlib
import traceback
import warnings

from tfp_vi_estimators.report import (
    accuracy,
    bias,
    discrete,
    memory,
    psis_khat,
    qmc_variance,
    snr_vs_k,
    speed,
    stl_fig1,
    variance,
)
from tfp_vi_estimators.report.document import (
    footer,
    report_dict,
    report_markdown,
    summary_table,
)
from tfp_vi_estimators.report.progress import Progress
from tfp_vi_estimators.report.section import SectionResult

__all__ = ["SECTIONS", "run_report", "run_section"]

# The report, in order. To add a section, write a module with `compute`,
# `render`, `summarize` (and `plot` if it draws one) gathered with its `NAME`
# and `TITLE` in a `SECTION` (see `report.section`), and append it here; its
# sizes go into `Settings` (`report.settings`).
SECTIONS = [
    stl_fig1.SECTION,
    snr_vs_k.SECTION,
    variance.SECTION,
    bias.SECTION,
    speed.SECTION,
    psis_khat.SECTION,
    qmc_variance.SECTION,
    accuracy.SECTION,
    discrete.SECTION,
]


def run_section(section, settings, out_dir, progress):
    """Computes, plots (into `out_dir`), renders and summarizes one section."""
    result = section.compute(settings, progress)
    markdown = section.render(result)
    plots = ()
    if section.plot is not None:
        section.plot(result, out_dir / section.plot_file)
        plots = (section.plot_file,)
        markdown += f"\n\n![{section.plot_caption}]({section.plot_file})"
    return SectionResult(
        section.title,
        markdown,
        dataclasses.asdict(result),
        tuple(section.summarize(result)),
        plots,
    )


def _failed_section(section, error):
    """The result of a section that raised `error`: the message and traceback."""
    message = f"{type(error).__name__}: {error}"
    return SectionResult(
        section.name,
        f"**This section failed:** `{message}`",
        dict(error=message, traceback=traceback.format_exc()),
        (("error", message),),
        status="error",
    )


def _run_sections(chosen, settings, out_dir, progress):
    """`{name: (SectionResult, seconds)}` and `{name: memory.Usage}` after each.

    A failing section does not stop the rest.
    """
    import tensorflow as tf

    results, usages = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.get_logger().setLevel("ERROR")
        for section in chosen:
            progress.section = section.name
            progress("start")
            start = progress.elapsed()
            try:
                result = run_section(section, settings, out_dir, progress)
            except Exception as error:  # noqa: BLE001 - reported, the rest runs
                progress(f"ERROR {type(error).__name__}: {error}")
                result = _failed_section(section, error)
            seconds = progress.elapsed() - start
            results[section.name] = (result, seconds)
            usages[section.name] = memory.usage()
            progress(
                f"done in {seconds:.1f} s; peak resident so far "
                f"{usages[section.name].peak_rss_mb:.0f} MB"
            )
    progress.section = ""
    return results, usages


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
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SECTIONS if sections is None or s.name in sections]
    progress = Progress(stream)
    progress(
        f"report ({settings.name}): {', '.join(s.name for s in chosen)} -> {out_dir}"
    )
    results, usages = _run_sections(chosen, settings, out_dir, progress)
    total = progress.elapsed()
    report = report_dict(settings, results, total, command, usages, memory.usage())
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report, results))
    peaks = {name: u.peak_rss_mb for name, u in usages.items()}
    print("\n" + summary_table(results, peaks), flush=True, file=stream)
    print(
        f"\nwrote {out_dir / 'report.md'}, report.json and "
        f"{sum(len(r.plots) for r, _ in results.values())} plot(s) in {total:.0f} s"
        f"\n{footer(report['meta'])}",
        flush=True,
        file=stream,
    )
    return report
