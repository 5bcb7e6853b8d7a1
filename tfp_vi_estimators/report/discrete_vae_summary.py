"""Tables and figures of Bernoulli VAE runs (`report.discrete_vae.train_arm`).

`runs` maps `'<arm> | seed <s>'` to one run's curves (`steps`,
`train_bound`, `test_bound`, `variance`, and `arm`, `seed`, `biased`,
`evaluations`). Across seeds, each arm's numbers are the mean and its
standard error (standard deviation / sqrt(seeds)):

- `final train` / `final test`: the training bound over the last interval,
  the 100-sample test bound at the last record (nats, higher is better);
- `variance`: the geometric mean of the encoder gradient's variance over the
  records after step 0 (the curves span orders of magnitude).
"""

import math
import warnings

import numpy as np

from tfp_vi_estimators.report import figures
from tfp_vi_estimators.report.formatting import fmt, markdown_table

__all__ = ["by_arm", "draw_curves", "plot_curves", "summarize_arms", "summary_table"]


def by_arm(runs):
    """`{arm: [curves of each seed]}`, arms in the order they first appear."""
    grouped = {}
    for curves in runs.values():
        grouped.setdefault(curves["arm"], []).append(curves)
    return grouped


def _mean_and_error(values):
    values = np.asarray([v for v in values if v is not None], float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    error = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0
    return float(values.mean()), float(error)


def _log_mean_variance(curves):
    variance = np.asarray(curves["variance"][1:], float)
    variance = variance[np.isfinite(variance) & (variance > 0)]
    return float(np.mean(np.log(variance))) if variance.size else float("nan")


def summarize_arms(runs):
    """Per arm: seeds, evaluations, biased, steps skipped (non-finite
    gradients, all seeds) and (mean, error) of the metrics."""
    rows = []
    for arm, seeds in by_arm(runs).items():
        log_variance = _mean_and_error([_log_mean_variance(c) for c in seeds])
        rows.append(
            dict(
                arm=arm,
                seeds=len(seeds),
                evaluations=seeds[0]["evaluations"],
                biased=seeds[0]["biased"],
                skipped=sum(c.get("skipped", 0) for c in seeds),
                train=_mean_and_error([c["train_bound"][-1] for c in seeds]),
                test=_mean_and_error([c["test_bound"][-1] for c in seeds]),
                variance=(
                    math.exp(log_variance[0]),
                    math.exp(log_variance[0]) * log_variance[1],
                ),
            )
        )
    return rows


def _pm(pair, digits=4):
    mean, error = pair
    return f"{fmt(mean, digits)} ± {fmt(error, 2)}"


def summary_table(runs):
    """The Markdown table of `summarize_arms`."""
    rows = [
        [
            r["arm"] + (" (biased)" if r["biased"] else ""),
            str(r["evaluations"]),
            str(r["seeds"]),
            _pm(r["train"]),
            _pm(r["test"]),
            _pm(r["variance"], 3),
        ]
        for r in summarize_arms(runs)
    ]
    header = [
        "estimator",
        "decoder evaluations",
        "seeds",
        "final train bound",
        "final 100-sample test bound",
        "encoder gradient variance",
    ]
    return markdown_table(header, rows)


def _band(ax, steps, values, label, log=False):
    values = np.asarray(values, float)
    if log:
        values = np.log10(values)
    with warnings.catch_warnings():  # a record NaN in every seed: a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        error = np.zeros_like(mean)
        if len(values) > 1:
            error = np.nanstd(values, axis=0, ddof=1) / np.sqrt(len(values))
    (line,) = ax.plot(steps, mean, label=label)
    ax.fill_between(
        steps, mean - error, mean + error, alpha=0.25, color=line.get_color()
    )


def draw_curves(axes, runs, title=""):
    """Training bound, test bound and log10 variance against steps on 3 axes."""
    for arm, seeds in by_arm(runs).items():
        steps = seeds[0]["steps"]
        label = arm + (" (biased)" if seeds[0]["biased"] else "")
        _band(axes[0], steps[1:], [c["train_bound"][1:] for c in seeds], label)
        _band(axes[1], steps, [c["test_bound"] for c in seeds], label)
        _band(axes[2], steps[1:], [c["variance"][1:] for c in seeds], label, log=True)
    for ax, name in zip(
        axes,
        ("training bound", "100-sample test bound", "log10 encoder gradient variance"),
        strict=True,
    ):
        ax.set_xlabel("step")
        ax.set_title(f"{title}: {name}" if title else name, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)


def plot_curves(runs, title, path):
    """`draw_curves` in a figure of its own, written to `path`."""
    figure, axes = figures.new_figure(ncols=3, width=4.6, height=3.6)
    draw_curves(axes, runs)
    figure.suptitle(title)
    figures.save_figure(figure, path)
