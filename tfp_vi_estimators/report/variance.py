"""Gradient variance and SNR of every estimator and option on shared problems.

Every estimator on a problem uses the same per-draw seeds and the same number
of target evaluations per gradient (S * K = 16; 12 for the 3-component
mixture estimator, which draws one sample per component). Reported per
parameter group: total gradient variance (summed over elements) and mean SNR
(|mean| / sd, averaged over elements), from `diagnostics.compare_estimators`.

`configurations()` and `variance_tables()` also serve the variance benchmark
(`benchmarks/variance_table.py`).
"""

import dataclasses

from tfp_vi_estimators import estimators, problems
from tfp_vi_estimators.diagnostics import (
    DEFAULT_CHUNK_SIZE,
    compare_estimators,
    format_table,
)
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report.formatting import fmt
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section

COLUMNS = ["estimator", "variable", "total_variance", "mean_snr"]


@dataclasses.dataclass(frozen=True)
class VarianceResult:
    """The variance table of each problem.

    Attributes:
      num_draws: gradient draws per configuration.
      problems: one dict per problem: `name`, `description` and `rows` (the
        rows of `diagnostics.compare_estimators`, with the problem's name).
    """

    num_draws: int
    problems: tuple


def configurations():
    """`[(problem, {label: (estimator, sample_size, importance_sample_size)})]`."""
    score_options = {
        "SCORE_FUNCTION S=16": (GE.SCORE_FUNCTION, 16, 1),
        "ScoreFunction(leave_one_out) S=16": (
            estimators.ScoreFunction("leave_one_out"),
            16,
            1,
        ),
        "VIMCO S=2 K=8": (GE.VIMCO, 2, 8),
        "SCORE_FUNCTION S=2 K=8": (GE.SCORE_FUNCTION, 2, 8),
    }
    pathwise = {
        "REPARAMETERIZATION S=16": (GE.REPARAMETERIZATION, 16, 1),
        "DOUBLY_REPARAMETERIZED S=16": (GE.DOUBLY_REPARAMETERIZED, 16, 1),
        "DoublyReparameterized(0.5) S=16": (
            estimators.DoublyReparameterized(0.5),
            16,
            1,
        ),
        "REPARAMETERIZATION S=2 K=8": (GE.REPARAMETERIZATION, 2, 8),
        "DOUBLY_REPARAMETERIZED S=2 K=8": (GE.DOUBLY_REPARAMETERIZED, 2, 8),
    }
    mixed = {
        "MixedReparameterization(auto) S=16": (
            estimators.MixedReparameterization(),
            16,
            1,
        ),
        "MixedReparameterization(None) S=16": (
            estimators.MixedReparameterization(None),
            16,
            1,
        ),
    }
    mixture = {
        "MixtureStickingTheLanding S=4 (x3 comps)": (
            estimators.MixtureStickingTheLanding(),
            4,
            1,
        ),
        "REPARAMETERIZATION (implicit) S=12": (GE.REPARAMETERIZATION, 12, 1),
    }
    return [
        (problems.gaussian(), {**score_options, **pathwise}),
        (problems.mixed_discrete(), {**score_options, **mixed}),
        (problems.mixture(), {**score_options, **mixture}),
    ]


def problem_rows(
    problem, configs, num_draws, seed, progress=silent, chunk_size=DEFAULT_CHUNK_SIZE
):
    """`compare_estimators` rows of every configuration of one problem."""
    rows = []
    for label, (estimator, sample_size, k) in configs.items():
        progress(f"{problem.name}: {label}")
        for row in compare_estimators(
            problem.target_log_prob_fn,
            problem.surrogate,
            {label: estimator},
            num_draws=num_draws,
            seed=seed,
            variables=problem.variables,
            sample_size=sample_size,
            importance_sample_size=k,
            chunk_size=chunk_size,
        ):
            rows.append(dict(problem=problem.name, **row))
    return rows


def variance_tables(
    num_draws,
    seed=(20, 26),
    max_configs=None,
    progress=silent,
    chunk_size=DEFAULT_CHUNK_SIZE,
):
    """`[(problem, rows)]`: `compare_estimators` rows for every configuration.

    Args:
      num_draws: independent seeds per configuration.
      seed: PRNG seed shared by all configurations of a problem.
      max_configs: if set, only the first `max_configs` configurations of each
        problem (for quick tests).
      progress: callable taking a progress message.
      chunk_size: gradient draws computed at once (`compare_estimators`).

    Returns:
      A list of `(problem, rows)`; each row is a dict with `problem`,
      `estimator`, `variable`, `mean_abs_mean`, `total_variance`, `mean_snr`.
    """
    tables = []
    for problem, configs in configurations():
        chosen = dict(list(configs.items())[:max_configs])
        rows = problem_rows(problem, chosen, num_draws, seed, progress, chunk_size)
        tables.append((problem, rows))
    return tables


def compute(settings, progress=silent):
    """The variance tables of every configuration: a `VarianceResult`."""
    tables = variance_tables(
        settings.variance_draws,
        seed=(20 + settings.seed, 26),
        max_configs=settings.variance_max_configs,
        progress=progress,
        chunk_size=settings.gradient_chunk_size,
    )
    return VarianceResult(
        num_draws=settings.variance_draws,
        problems=tuple(
            dict(name=problem.name, description=problem.description, rows=rows)
            for problem, rows in tables
        ),
    )


def render(result):
    """The section's Markdown: one table per problem."""
    parts = [
        f"{result.num_draws} gradient draws per configuration, the same "
        "seeds for every estimator on a problem. *total_variance*: summed over "
        "the group's elements; *mean_snr*: |mean| / sd averaged over elements."
    ]
    for problem in result.problems:
        parts.append(f"\n**{problem['name']}**: {problem['description']}\n")
        parts.append(format_table(problem["rows"], COLUMNS))
    return "\n".join(parts)


def summarize(result):
    """Variance of the `loc` gradient of the total and path derivatives."""
    by = {
        (r["estimator"], r["variable"]): r
        for p in result.problems
        if p["name"].startswith("gaussian")
        for r in p["rows"]
    }
    total = by.get(("REPARAMETERIZATION S=16", "loc"))
    path = by.get(("DOUBLY_REPARAMETERIZED S=16", "loc"))
    if not (total and path):
        return [("configurations", str(sum(len(p["rows"]) for p in result.problems)))]
    return [
        (
            "variance loc (gaussian)",
            f"REPARAMETERIZATION {fmt(total['total_variance'])}, "
            f"DOUBLY_REPARAMETERIZED {fmt(path['total_variance'])}",
        )
    ]


NAME = "variance"
TITLE = "Gradient variance of every estimator and option"
SECTION = Section(NAME, TITLE, compute, render, summarize)
