"""Step time against `tfp.vi`, from the timing harness (`report.timing`).

For each problem and estimator, both implementations compiled with
`tf.function(jit_compile=True)` and timed alternately in rounds; reported are
median milliseconds per loss-and-gradient step and the ratio ours / tfp.vi
("refused" where tfp.vi does not support the configuration).
"""

import dataclasses

import numpy as np

from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report import timing
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
    """

    rounds: int
    steps: int
    rows: tuple
    median_ratio: float


def compute(settings, progress=silent):
    """Times every configuration (or the first few, in tiny runs)."""
    progress(
        f"timing harness, {settings.speed_rounds} rounds x "
        f"{settings.speed_steps} steps (the first steps compile with XLA)"
    )
    trimmed = {}
    if settings.speed_max_configs is not None:
        # tiny runs (tests): one estimator on the first problem(s)
        trimmed = dict(
            max_configs=settings.speed_max_configs,
            estimators=[GE.DOUBLY_REPARAMETERIZED],
        )
    rows = timing.run(
        settings.speed_rounds,
        settings.speed_steps,
        on_row=lambda row: progress(timing.format_row(row)),
        **trimmed,
    )
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    return SpeedResult(
        rounds=settings.speed_rounds,
        steps=settings.speed_steps,
        rows=tuple(rows),
        median_ratio=float(np.median(ratios)) if ratios else float("nan"),
    )


def render(result):
    """The section's Markdown: how it was timed, and a row per configuration."""
    table = markdown_table(
        ["problem", "S", "K", "estimator", "ours ms", "tfp.vi ms", "ours / tfp.vi"],
        [
            [
                r["problem"],
                str(r["S"]),
                str(r["K"]),
                r["estimator"],
                fmt(r["ours_ms"]),
                fmt(r["tfp_ms"]) if r["tfp_ms"] else "refused",
                fmt(r["ratio"], 3),
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
        ]
    )


def summarize(result):
    """The median ratio ours / tfp.vi."""
    return [("median ours / tfp.vi step time", fmt(result.median_ratio, 3))]


NAME = "speed"
TITLE = "Speed against tfp.vi"
SECTION = Section(NAME, TITLE, compute, render, summarize)
