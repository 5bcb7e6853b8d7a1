"""How step time and the diagnostics' memory grow with problem size.

Three sweeps, each a list of dict rows:

- `sample_size`: XLA-compiled loss-and-gradient step of ours and `tfp.vi`'s
  (REPARAMETERIZATION, K = 1) on the 40-d correlated Gaussian with a
  full-rank surrogate, against `sample_size`;
- `dimension`: the same at `sample_size = 64`, against the dimension;
- `draws`: the peak resident memory that `diagnostics.gradient_moments` adds
  while it runs, against the number of gradient draws, streamed in chunks of
  `chunk_size` and all at once (`chunk_size = num_draws`, the behaviour before
  streaming), on the SNR section's linear Gaussian model (D = 20, 16 data
  points, K = 4).

A log-log slope near 1 means linear growth; a streamed memory slope near 0
means memory independent of the number of draws. `plot` draws the three
sweeps side by side; `benchmarks/performance_table.py` saves the same plot
under `docs/img/`.
"""

import functools
import time

import numpy as np

from tfp_vi_estimators import problems
from tfp_vi_estimators.diagnostics import DEFAULT_CHUNK_SIZE, gradient_moments
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report import figures, memory, timing
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.snr_vs_k import LinearGaussianModel
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__all__ = ["draws_memory", "log_log_slope", "plot", "step_time_sweep"]

SWEEP_DIM = 40  # dimension of the sample_size sweep
SWEEP_SAMPLE_SIZE = 64  # sample_size of the dimension sweep


def log_log_slope(xs, ys):
    """Least-squares slope of log y against log x (NaN with < 2 usable points)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    keep = np.isfinite(ys) & (ys > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs[keep]), np.log(ys[keep]), 1)[0])


def step_time_sweep(sample_sizes, dims, rounds, steps, progress=silent):
    """Step-time rows against `sample_size` and against the dimension.

    Returns:
      A list of `timing.time_configuration` rows, each with `axis`
      (`'sample_size'` or `'dimension'`) and `size` (the swept value) added.
    """
    points = [("sample_size", s, SWEEP_DIM, s) for s in sample_sizes]
    points += [("dimension", d, d, SWEEP_SAMPLE_SIZE) for d in dims]
    rows = []
    for axis, size, dim, sample_size in points:
        problem = problems.gaussian(dim=dim)
        row = timing.time_configuration(
            problem, GE.REPARAMETERIZATION, sample_size, 1, rounds, steps
        )
        rows.append(dict(axis=axis, size=size, **row))
        progress(f"{axis} {size}: {timing.format_row(row)}")
    return rows


def _snr_model_loss(importance_sample_size=4):
    """The SNR section's linear Gaussian model and a `seed -> loss` on it."""
    model = LinearGaussianModel(dim=20, num_data=16, perturbation=0.01, seed=0)

    def loss(seed):
        return monte_carlo_variational_loss(
            model.target_log_prob,
            model.surrogate(),
            importance_sample_size=importance_sample_size,
            gradient_estimator=GE.REPARAMETERIZATION,
            seed=seed,
        )

    return model, loss


def draws_memory(draw_counts, chunk_size=DEFAULT_CHUNK_SIZE, progress=silent):
    """Peak memory and seconds of `gradient_moments`, streamed and all at once.

    Returns:
      A list of dicts: `num_draws`, `streamed_mb`, `all_at_once_mb` (the peak
      resident memory added while the call ran, `memory.peak_rss_increase_mb`),
      `streamed_s`, `all_at_once_s` (wall seconds, tracing included).
    """
    model, loss = _snr_model_loss()
    rows = []
    for num_draws in draw_counts:
        row = dict(num_draws=num_draws)
        for key, chunk in (("streamed", chunk_size), ("all_at_once", num_draws)):
            moments = functools.partial(
                gradient_moments, loss, model.variables, num_draws, (1, 2), chunk
            )
            start = time.perf_counter()
            _, row[f"{key}_mb"] = memory.peak_rss_increase_mb(
                lambda moments=moments: [v.numpy() for v in moments().variance]
            )
            row[f"{key}_s"] = time.perf_counter() - start
        rows.append(row)
        progress(
            f"{num_draws} draws: streamed +{row['streamed_mb']:.0f} MB, "
            f"all at once +{row['all_at_once_mb']:.0f} MB"
        )
    return rows


def _plot_time(ax, rows, axis, xlabel):
    mine = [r for r in rows if r["axis"] == axis]
    sizes = [r["size"] for r in mine]
    for key, label in (("ours_ms", "ours"), ("tfp_ms", "tfp.vi")):
        ax.plot(sizes, [r[key] for r in mine], marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms per step (XLA)")


def plot(step_rows, memory_rows, path):
    """Log-log: step time against sample_size and dimension; memory against draws."""
    figure, axes = figures.new_figure(ncols=3, width=3.3, height=2.8)
    _plot_time(axes[0], step_rows, "sample_size", "sample_size")
    axes[0].set_title(f"{SWEEP_DIM}-d Gaussian", fontsize=9)
    _plot_time(axes[1], step_rows, "dimension", "dimension")
    axes[1].set_title(f"sample_size {SWEEP_SAMPLE_SIZE}", fontsize=9)
    draws = [r["num_draws"] for r in memory_rows]
    for key, label in (("streamed_mb", "streamed"), ("all_at_once_mb", "all at once")):
        # Floor at 1 MB: a streamed increase can be 0 (memory reused).
        values = [max(r[key], 1.0) for r in memory_rows]
        axes[2].plot(draws, values, marker="o", label=label)
    axes[2].set_xlabel("gradient draws")
    axes[2].set_ylabel("peak memory added (MB)")
    axes[2].set_title("gradient_moments", fontsize=9)
    for ax in axes:
        figures.log_log(ax)
        ax.legend(fontsize=7)
    figure.subplots_adjust(wspace=0.45)
    figures.save_figure(figure, path)
