"""Gradient variance and SNR of every estimator and option on shared problems.

Every estimator on a problem uses the same per-draw seeds and the same number
of target evaluations per gradient (S * K = 16; 12 for the 3-component
mixture estimator, which draws one sample per component). Reported per
parameter group: total gradient variance (summed over elements) and mean SNR
(|mean| / sd, averaged over elements), from `diagnostics.gradient_moments`.

`configurations()` and `run()` are the variance benchmark's
(`benchmarks/variance_table.py`), kept in the package so that the report and
the benchmark share them.
"""

from tfp_vi_estimators import estimators, problems
from tfp_vi_estimators.diagnostics import compare_estimators, format_table
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report._common import SectionResult, fmt

NAME = "variance"
TITLE = "Gradient variance of every estimator and option"


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


def run_tables(num_draws, seed=(20, 26), max_configs=None, progress=None):
    """`[(problem, rows)]`: `compare_estimators` rows for every configuration.

    Args:
      num_draws: independent seeds per configuration.
      seed: PRNG seed shared by all configurations of a problem.
      max_configs: if set, only the first `max_configs` configurations of each
        problem (for quick tests).
      progress: optional callable taking a progress message.

    Returns:
      A list of `(problem, rows)`; each row is a dict with `problem`,
      `estimator`, `variable`, `mean_abs_mean`, `total_variance`, `mean_snr`.
    """
    tables = []
    for problem, configs in configurations():
        rows = []
        items = list(configs.items())[:max_configs]
        for label, (estimator, sample_size, k) in items:
            if progress is not None:
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
            ):
                rows.append(dict(problem=problem.name, **row))
        tables.append((problem, rows))
    return tables


def run(settings, progress, out_dir):
    """The variance tables of every configuration (no plot)."""
    del out_dir  # no plot
    tables = run_tables(
        settings.variance_draws,
        seed=(20 + settings.seed, 26),
        max_configs=settings.variance_max_configs,
        progress=progress,
    )
    parts = [
        f"{settings.variance_draws} gradient draws per configuration, the same "
        "seeds for every estimator on a problem. *total_variance*: summed over "
        "the group's elements; *mean_snr*: |mean| / sd averaged over elements."
    ]
    data = dict(num_draws=settings.variance_draws, problems=[])
    for problem, rows in tables:
        parts.append(f"\n**{problem.name}**: {problem.description}\n")
        parts.append(
            format_table(rows, ["estimator", "variable", "total_variance", "mean_snr"])
        )
        data["problems"].append(
            dict(name=problem.name, description=problem.description, rows=rows)
        )
    summary = []
    gaussian = [r for p, rows in tables for r in rows if p.name.startswith("gaussian")]
    by = {(r["estimator"], r["variable"]): r for r in gaussian}
    total = by.get(("REPARAMETERIZATION S=16", "loc"))
    path = by.get(("DOUBLY_REPARAMETERIZED S=16", "loc"))
    if total and path:
        summary.append(
            (
                "variance loc (gaussian)",
                f"REPARAMETERIZATION {fmt(total['total_variance'])}, "
                f"DOUBLY_REPARAMETERIZED {fmt(path['total_variance'])}",
            )
        )
    else:
        summary.append(("configurations", str(sum(len(r) for _, r in tables))))
    return SectionResult(TITLE, "\n".join(parts), data, summary)
