"""Step time against `tfp.vi`, from the core speed benchmark.

Runs `benchmarks/speed_vs_tfp.py` (found next to the package in a source
checkout): for each problem and estimator, both implementations compiled with
`tf.function(jit_compile=True)` and timed alternately in rounds; reported are
median milliseconds per loss-and-gradient step and the ratio ours / tfp.vi
("refused" where tfp.vi does not support the configuration). Without a source
checkout the section is skipped.
"""

import contextlib
import importlib.util
import io
import pathlib

import numpy as np

from tfp_vi_estimators.report._common import SectionResult, fmt

NAME = "speed"
TITLE = "Speed against tfp.vi"
BENCHMARK = (
    pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "speed_vs_tfp.py"
)


def load_benchmark(path=BENCHMARK):
    """The benchmark module, or None when the file is not there."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_speed_vs_tfp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LineForwarder(io.TextIOBase):
    """A text stream that hands each complete line to `progress`."""

    def __init__(self, progress):
        self._progress = progress
        self._buffer = ""

    def write(self, text):
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self._progress(line.strip())
        return len(text)


def run(settings, progress, out_dir):
    """The speed benchmark's rows (skipped without a source checkout)."""
    del out_dir  # no plot
    bench = load_benchmark()
    if bench is None:
        message = f"skipped: {BENCHMARK} not found (run from a source checkout)"
        progress(message)
        return SectionResult(TITLE, message, dict(reason=message), status="skipped")
    progress(
        f"benchmarks/speed_vs_tfp.py, {settings.speed_rounds} rounds x "
        f"{settings.speed_steps} steps (the first steps compile with XLA)"
    )
    with contextlib.redirect_stdout(_LineForwarder(progress)):
        if settings.speed_max_configs is None:
            rows = bench.run(settings.speed_rounds, settings.speed_steps)
        else:  # tiny runs (tests): one estimator on the first problem(s)
            rows = bench.run(
                settings.speed_rounds,
                settings.speed_steps,
                max_configs=settings.speed_max_configs,
                estimators=[bench.GE.DOUBLY_REPARAMETERIZED],
            )
    lines = [
        "| problem | S | K | estimator | ours ms | tfp.vi ms | ours / tfp.vi |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tfp_ms = fmt(r["tfp_ms"]) if r["tfp_ms"] else "refused"
        lines.append(
            f"| {r['problem']} | {r['S']} | {r['K']} | {r['estimator']} | "
            f"{fmt(r['ours_ms'])} | {tfp_ms} | {fmt(r['ratio'], 3)} |"
        )
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    median_ratio = float(np.median(ratios)) if ratios else float("nan")
    markdown = "\n".join(
        [
            f"Median ms per loss-and-gradient step over {settings.speed_rounds} "
            f"rounds of {settings.speed_steps} steps, XLA-compiled, ours and "
            "tfp.vi timed alternately in the same process. Median ratio ours / "
            f"tfp.vi: {fmt(median_ratio, 3)}. Few rounds (`--quick`) make the "
            "ratios noisy to a few percent.",
            "",
            "\n".join(lines),
        ]
    )
    summary = [("median ours / tfp.vi step time", fmt(median_ratio, 3))]
    data = dict(
        rounds=settings.speed_rounds,
        steps=settings.speed_steps,
        rows=rows,
        median_ratio=median_ratio,
    )
    return SectionResult(TITLE, markdown, data, summary)
