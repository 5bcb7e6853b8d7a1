"""Step time against `tfp.vi` (`report.timing`), and how cost grows (`report.scaling`).

For each problem and estimator, both implementations compiled with
`tf.function(jit_compile=True)` and timed alternately in rounds; reported are
median milliseconds per loss-and-gradient step, the ratio ours / tfp.vi
("refused" where tfp.vi does not support the configuration) and the compile
time (the first call). Then the step time of both against `sample_size` and
the dimension, and the memory of the gradient diagnostics against the number
of draws, with log-log slopes and a plot.
"""

import dataclasses
import math

import numpy as np

from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report import scaling, timing
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section


@dataclasses.dataclass(frozen=True)
class SpeedResult:
    """The timing harness's rows and the median ratio ours / tfp.vi.

    Attributes:
      rounds, steps: timing rounds per row and steps per round.
      rows: the rows of `timing.run`.
      median_ratio: median over the rows tfp.vi supports of ours / tfp.vi.
      scaling: step-time rows of `scaling.step_time_sweep`.
      memory: rows of `scaling.draws_memory`.
      slopes: log-log slopes: `ours_sample_size`, `tfp_sample_size`,
        `ours_dimension`, `tfp_dimension`, `streamed_draws`,
        `all_at_once_draws`.
    """

    rounds: int
    steps: int
    rows: tuple
    median_ratio: float
    scaling: tuple = ()
    memory: tuple = ()
    slopes: dict = dataclasses.field(default_factory=dict)


def compute(settings, progress=silent):
    """Times the configurations (some, in quick and tiny runs) and the sweeps."""
    progress(
        f"timing harness, {settings.speed_rounds} rounds x "
        f"{settings.speed_steps} steps (the first steps compile with XLA)"
    )
    estimators = tuple(GE)
    if settings.speed_estimators is not None:
        estimators = tuple(GE[name] for name in settings.speed_estimators)
    rows = timing.run(
        settings.speed_rounds,
        settings.speed_steps,
        max_configs=settings.speed_max_configs,
        estimators=estimators,
        on_row=lambda row: progress(timing.format_row(row)),
    )
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    progress("scaling: step time against sample_size and dimension")
    step_rows = scaling.step_time_sweep(
        settings.speed_sample_sizes,
        settings.speed_dims,
        settings.speed_rounds,
        settings.speed_steps,
        progress,
    )
    progress("scaling: memory of gradient_moments against the number of draws")
    memory_rows = scaling.draws_memory(
        settings.speed_memory_draws, settings.gradient_chunk_size, progress
    )
    return SpeedResult(
        rounds=settings.speed_rounds,
        steps=settings.speed_steps,
        rows=tuple(rows),
        median_ratio=float(np.median(ratios)) if ratios else float("nan"),
        scaling=tuple(step_rows),
        memory=tuple(memory_rows),
        slopes=growth_slopes(step_rows, memory_rows),
    )


def growth_slopes(step_rows, memory_rows):
    """Log-log slopes of every sweep (see `SpeedResult.slopes`)."""
    slopes = {}
    for axis in ("sample_size", "dimension"):
        mine = [r for r in step_rows if r["axis"] == axis]
        for who in ("ours", "tfp"):
            slopes[f"{who}_{axis}"] = scaling.log_log_slope(
                [r["size"] for r in mine], [r[f"{who}_ms"] for r in mine]
            )
    draws = [r["num_draws"] for r in memory_rows]
    for key in ("streamed", "all_at_once"):
        slopes[f"{key}_draws"] = scaling.log_log_slope(
            draws, [r[f"{key}_mb"] for r in memory_rows]
        )
    return slopes


def _growth_time_table(rows):
    """Markdown: the step-time sweeps, a row per point."""
    return markdown_table(
        [
            "swept",
            "value",
            "ours ms",
            "tfp.vi ms",
            "ours compile s",
            "tfp.vi compile s",
        ],
        [
            [
                r["axis"],
                str(r["size"]),
                fmt(r["ours_ms"]),
                fmt(r["tfp_ms"]),
                fmt(r["ours_compile_s"], 2),
                fmt(r["tfp_compile_s"], 2),
            ]
            for r in rows
        ],
    )


def _growth_memory_table(rows):
    """Markdown: the diagnostics' memory against the number of draws."""
    return markdown_table(
        ["draws", "streamed MB", "all at once MB", "streamed s", "all at once s"],
        [
            [
                str(r["num_draws"]),
                fmt(r["streamed_mb"]),
                fmt(r["all_at_once_mb"]),
                fmt(r["streamed_s"], 2),
                fmt(r["all_at_once_s"], 2),
            ]
            for r in rows
        ],
    )


def render_growth(result):
    """Markdown: the step-time and memory sweeps and their log-log slopes."""
    slopes = ", ".join(
        f"{k} {v:.2f}" if math.isfinite(v) else f"{k} -"
        for k, v in result.slopes.items()
    )
    return "\n".join(
        [
            "**Growth.** REPARAMETERIZATION on the correlated Gaussian "
            f"(full-rank surrogate): against sample_size at d = {scaling.SWEEP_DIM}, "
            f"against the dimension at sample_size = {scaling.SWEEP_SAMPLE_SIZE}.",
            "",
            _growth_time_table(result.scaling),
            "",
            "Peak resident memory added by `diagnostics.gradient_moments` on the "
            "SNR model (K = 4), streamed in chunks and all at once (a lower bound: "
            "memory the allocator kept from earlier sections is not counted).",
            "",
            _growth_memory_table(result.memory),
            "",
            f"Log-log slopes: {slopes}.",
        ]
    )


def plot(result, path):
    """Log-log plot of the sweeps (`scaling.plot`)."""
    scaling.plot(result.scaling, result.memory, path)


def render(result):
    """The section's Markdown: how it was timed, a row per configuration, growth."""
    table = markdown_table(
        [
            "problem",
            "S",
            "K",
            "estimator",
            "ours ms",
            "tfp.vi ms",
            "ours / tfp.vi",
            "ours compile s",
            "tfp.vi compile s",
        ],
        [
            [
                r["problem"],
                str(r["S"]),
                str(r["K"]),
                r["estimator"],
                fmt(r["ours_ms"]),
                fmt(r["tfp_ms"]) if r["tfp_ms"] else "refused",
                fmt(r["ratio"], 3),
                fmt(r.get("ours_compile_s"), 2),
                fmt(r.get("tfp_compile_s"), 2),
            ]
            for r in result.rows
        ],
    )
    return "\n".join(
        [
            f"Median ms per loss-and-gradient step over {result.rounds} "
            f"rounds of {result.steps} steps, XLA-compiled, ours and "
            "tfp.vi timed alternately in the same process. Median ratio ours / "
            f"tfp.vi: {fmt(result.median_ratio, 3)}. Few rounds (`--quick`) make "
            "the ratios noisy to a few percent.",
            "",
            table,
            "",
            render_growth(result) if result.scaling or result.memory else "",
        ]
    )


def summarize(result):
    """The median ratio ours / tfp.vi, and the streamed memory's growth."""
    summary = [("median ours / tfp.vi step time", fmt(result.median_ratio, 3))]
    if result.memory:
        last = result.memory[-1]
        summary.append(
            (
                f"diagnostics memory at {last['num_draws']} draws",
                f"streamed +{fmt(last['streamed_mb'])} MB, all at once "
                f"+{fmt(last['all_at_once_mb'])} MB",
            )
        )
    return summary


NAME = "speed"
TITLE = "Speed against tfp.vi, and how cost grows"
SECTION = Section(
    NAME, TITLE, compute, render, summarize, plot, "log-log growth of cost"
)
