"""Gradient variance of iid against randomized quasi-Monte Carlo sampling, by S.

Target: the report's `qmc_dim`-d correlated Gaussian (`problems.gaussian`);
surrogate: a mean-field Gaussian away from the optimum (every `loc` 0.3,
every `scale` 0.8). For REPARAMETERIZATION and DOUBLY_REPARAMETERIZED,
`quasi_monte_carlo.variance_by_sample_size` measures the total variance
(summed over parameters) of the loss gradient at each sample size S, from
`qmc_repeats` independent seeds, with `sampling='iid'` and with
`sampling='rqmc'` (randomly digitally shifted Sobol' points through the
surrogate's reparameterization; Buchholz, Wenzel and Mandt 2018). iid variance
falls as `1 / S` (log-log slope -1); for a smooth integrand randomized QMC's
falls faster, towards `S^-2` (Owen 1997), so the ratio iid / RQMC grows with
S. Powers of two suit the Sobol' nets.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import problems
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.quasi_monte_carlo import variance_by_sample_size
from tfp_vi_estimators.report import figures
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section

tfd = tfp.distributions

ESTIMATORS = (GE.REPARAMETERIZATION, GE.DOUBLY_REPARAMETERIZED)
SURROGATE_LOC = 0.3
SURROGATE_SCALE = 0.8


@dataclasses.dataclass(frozen=True)
class QmcResult:
    """Variance curves of both samplings for each estimator.

    Attributes:
      dim: dimension of the target.
      num_repeats: independent seeds per point.
      curves: one dict per estimator: `estimator`, and the keys of
        `variance_by_sample_size` (`sample_sizes`, `iid`, `rqmc`,
        `iid_standard_error`, `rqmc_standard_error`), `ratio` (iid / RQMC at
        each S), `slope_iid` and `slope_rqmc` (least-squares slopes of log
        variance on log S).
    """

    dim: int
    num_repeats: int
    curves: tuple


def mean_field_surrogate(dim):
    """Mean-field Gaussian with every `loc` 0.3 and `scale` 0.8 (trainable)."""
    return tfd.Independent(
        tfd.Normal(
            tf.Variable(tf.fill([dim], SURROGATE_LOC), name="loc"),
            tf.Variable(tf.fill([dim], SURROGATE_SCALE), name="scale"),
        ),
        1,
    )


def fit_slope(sample_sizes, variances):
    """Least-squares slope of log variance on log S (NaN below two points)."""
    x, y = np.log(np.asarray(sample_sizes, float)), np.asarray(variances, float)
    keep = np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[keep], np.log(y[keep]), 1)[0])


def curve(target, surrogate, estimator, settings):
    """One estimator's variances by S and sampling, ratios and slopes."""
    measured = variance_by_sample_size(
        target.target_log_prob_fn,
        surrogate,
        sample_sizes=settings.qmc_sample_sizes,
        num_repeats=settings.qmc_repeats,
        gradient_estimator=estimator,
        seed=settings.seed,
    )
    sizes = measured["sample_sizes"]
    return dict(
        estimator=estimator.name,
        sample_sizes=list(sizes),
        iid=list(measured["iid"]),
        rqmc=list(measured["rqmc"]),
        iid_standard_error=list(measured["iid_standard_error"]),
        rqmc_standard_error=list(measured["rqmc_standard_error"]),
        ratio=[
            i / r if r > 0 else float("inf")
            for i, r in zip(measured["iid"], measured["rqmc"], strict=True)
        ],
        slope_iid=fit_slope(sizes, measured["iid"]),
        slope_rqmc=fit_slope(sizes, measured["rqmc"]),
    )


def compute(settings, progress=silent):
    """Variance of both samplings across S for each estimator: a `QmcResult`."""
    target = problems.gaussian(settings.qmc_dim, seed=settings.seed)
    surrogate = mean_field_surrogate(settings.qmc_dim)
    curves = []
    for estimator in ESTIMATORS:
        progress(
            f"{estimator.name}: S in {list(settings.qmc_sample_sizes)}, "
            f"{settings.qmc_repeats} seeds each, iid and rqmc"
        )
        curves.append(curve(target, surrogate, estimator, settings))
    return QmcResult(settings.qmc_dim, settings.qmc_repeats, tuple(curves))


def render(result):
    """The section's Markdown: setup, a table per estimator, the slopes."""
    parts = [
        f"Target: {result.dim}-d correlated Gaussian (`problems.gaussian`); "
        f"surrogate: mean-field Gaussian away from the optimum (loc "
        f"{SURROGATE_LOC}, scale {SURROGATE_SCALE}). Total gradient variance "
        f"(summed over parameters) from {result.num_repeats} independent seeds "
        "per point, relative standard error sqrt(2 / (R - 1)) = "
        f"{np.sqrt(2.0 / (result.num_repeats - 1)):.2f}; *rqmc*: "
        "`sampling='rqmc'` (randomly digitally shifted Sobol' points). iid variance "
        "falls as 1/S (slope -1); RQMC's falls faster on a smooth target.",
    ]
    for c in result.curves:
        parts += [
            f"\n**{c['estimator']}**: log-log slope iid {fmt(c['slope_iid'], 2)}, "
            f"RQMC {fmt(c['slope_rqmc'], 2)}.\n",
            markdown_table(
                ["S", "iid variance", "RQMC variance", "iid / RQMC"],
                [
                    [str(s), fmt(i), fmt(r), fmt(ratio)]
                    for s, i, r, ratio in zip(
                        c["sample_sizes"], c["iid"], c["rqmc"], c["ratio"], strict=True
                    )
                ],
            ),
        ]
    return "\n".join(parts)


def summarize(result):
    """Per estimator: iid / RQMC at the largest S, and both slopes."""
    return [
        (
            f"iid / RQMC ({c['estimator']})",
            f"{fmt(c['ratio'][-1])} at S={c['sample_sizes'][-1]}; slopes iid "
            f"{fmt(c['slope_iid'], 2)}, RQMC {fmt(c['slope_rqmc'], 2)}",
        )
        for c in result.curves
    ]


def plot(result, path):
    """Variance against S, log-log, iid and RQMC for each estimator."""
    figure, (ax,) = figures.new_figure(width=6.5, height=4.5)
    colors = {"REPARAMETERIZATION": "tab:red", "DOUBLY_REPARAMETERIZED": "tab:blue"}
    for c in result.curves:
        for sampling, style in (("iid", "o-"), ("rqmc", "s--")):
            ax.errorbar(
                c["sample_sizes"],
                c[sampling],
                yerr=c[f"{sampling}_standard_error"],
                fmt=style,
                color=colors.get(c["estimator"]),
                markersize=4,
                capsize=2,
                label=f"{c['estimator']}, {sampling} (slope "
                f"{fmt(c[f'slope_{sampling}'], 2)})",
            )
    figures.log_log(ax)
    ax.set_xlabel("sample size S")
    ax.set_ylabel("total gradient variance")
    ax.set_title(f"{result.dim}-d Gaussian, mean-field surrogate: iid against RQMC")
    ax.legend(fontsize=8)
    figures.save_figure(figure, path)


NAME = "qmc_variance"
TITLE = "Fewer samples: iid against randomized quasi-Monte Carlo gradient variance"
SECTION = Section(
    NAME, TITLE, compute, render, summarize, plot, "gradient variance against S"
)
