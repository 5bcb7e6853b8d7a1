"""Signal-to-noise ratio of inference-network gradients against K.

The linear Gaussian model of Rainforth et al. (2018) and Tucker et al. (2018):

```none
p(z) = N(0, I_D),  p(x | z) = N(z, I_D),  q(z | x) = N(A x + b, 2/3 I_D)
```

with inference parameters `A` (D x D) and `b` (D), `D = snr_dim`. The optimum
is `A = I / 2`, `b = 0` (the posterior mean is `x / 2`); the parameters are
perturbed from it by independent `N(0, snr_perturbation^2)` noise. The loss
is the negative IWAE bound summed over a fixed minibatch of `snr_num_data`
points `x ~ N(0, 2 I)` drawn from the model.

For each estimator and K the mean and variance of every gradient element come
from `diagnostics.gradient_moments` over `snr_draws` independent seeds. The
SNR of a parameter group is the root mean square over its elements of
`|mean| / sd`, with the squared mean debiased (`mean^2 - variance / N`): the
plain `|mean_hat|` of N draws is biased upwards by about `sd / sqrt(N)`, which
would otherwise flatten the curves where the SNR falls below
`1 / sqrt(N)` (the noise floor drawn in the plot).

Expected shapes: IWAE's (REPARAMETERIZATION) SNR falls like `K^-1/2`, DReG's
(DOUBLY_REPARAMETERIZED) rises (like `K^1/2` for large K); score-function
estimators sit far below both.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.diagnostics import DEFAULT_CHUNK_SIZE, gradient_moments
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report import figures
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions

ESTIMATORS = {
    "IWAE (REPARAMETERIZATION)": GE.REPARAMETERIZATION,
    "DReG (DOUBLY_REPARAMETERIZED)": GE.DOUBLY_REPARAMETERIZED,
    "VIMCO": GE.VIMCO,
    "SCORE_FUNCTION": GE.SCORE_FUNCTION,
}


@dataclasses.dataclass(frozen=True)
class SnrResult:
    """SNR of each parameter group per estimator and K, and log-log slopes.

    Attributes:
      dim, num_data, perturbation: the model's sizes (`snr_*` settings).
      num_draws: gradient draws per point.
      ks: the K measured.
      groups: names of the parameter groups (`A`, `b`).
      points: one dict per (estimator, K): per group `snr_<g>` (debiased RMS),
        `plain_mean_snr_<g>` and `total_variance_<g>`.
      slopes: one dict per estimator: per group `slope_<g>` and
        `tail_slope_<g>`.
    """

    dim: int
    num_data: int
    perturbation: float
    num_draws: int
    ks: tuple
    groups: tuple
    points: tuple
    slopes: tuple

    @property
    def noise_floor(self):
        """1 / sqrt(draws): SNRs below it are not resolved."""
        return 1.0 / np.sqrt(self.num_draws)


class LinearGaussianModel:
    """The model, a fixed minibatch, and perturbed inference parameters."""

    def __init__(self, dim, num_data, perturbation, seed):
        rng = np.random.default_rng(seed)
        self.x = tf.constant(
            rng.normal(size=(num_data, dim)) * np.sqrt(2.0), tf.float32
        )
        self.a = tf.Variable(
            (0.5 * np.eye(dim) + perturbation * rng.normal(size=(dim, dim))).astype(
                np.float32
            ),
            name="A",
        )
        self.b = tf.Variable(
            (perturbation * rng.normal(size=dim)).astype(np.float32), name="b"
        )
        self.scale = np.float32(np.sqrt(2.0 / 3.0))

    @property
    def variables(self):
        return [self.a, self.b]

    @property
    def groups(self):
        """The variables' names: `A`, `b`."""
        return [v.name.split(":")[0] for v in self.variables]

    def surrogate(self):
        loc = tf.linalg.matvec(self.a, self.x) + self.b
        return tfd.Independent(tfd.Normal(loc, self.scale), 1)

    def target_log_prob(self, z):
        log_prior = tfd.Normal(0.0, 1.0).log_prob(z)
        log_likelihood = tfd.Normal(z, 1.0).log_prob(self.x)
        return tf.reduce_sum(log_prior + log_likelihood, axis=-1)


def debiased_rms_snr(mean, variance, num_draws):
    """sqrt(mean over elements of (mean^2 - var/N) / var); NaN if not positive."""
    mean = np.asarray(mean, np.float64)
    variance = np.asarray(variance, np.float64)
    keep = variance > 0
    squared = np.mean((mean[keep] ** 2 - variance[keep] / num_draws) / variance[keep])
    return float(np.sqrt(squared)) if squared > 0 else float("nan")


def fit_slope(ks, snrs, floor=0.0):
    """Least-squares slope of log SNR against log K over points above `floor`."""
    ks, snrs = np.asarray(ks, float), np.asarray(snrs, float)
    keep = np.isfinite(snrs) & (snrs > floor)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ks[keep]), np.log(snrs[keep]), 1)[0])


def measure_point(
    model, label, estimator, k, num_draws, seed, chunk_size=DEFAULT_CHUNK_SIZE
):
    """SNR and variance of each parameter group for one estimator and K.

    The gradient draws stream through `gradient_moments` `chunk_size` at a time.
    """

    def loss(loss_seed):
        return monte_carlo_variational_loss(
            model.target_log_prob,
            model.surrogate(),
            importance_sample_size=k,
            gradient_estimator=estimator,
            seed=loss_seed,
        )

    moments = gradient_moments(
        loss, model.variables, num_draws, seed=seed, chunk_size=chunk_size
    )
    point = dict(estimator=estimator.name, label=label, K=k)
    for group, m, v, snr in zip(
        model.groups, moments.mean, moments.variance, moments.snr, strict=True
    ):
        point[f"snr_{group}"] = debiased_rms_snr(m, v, num_draws)
        point[f"plain_mean_snr_{group}"] = float(tf.reduce_mean(snr))
        point[f"total_variance_{group}"] = float(tf.reduce_sum(v))
    return point


def measure_points(settings, model, progress):
    """`measure_point` for every estimator and K (VIMCO from K = 2)."""
    points = []
    for label, estimator in ESTIMATORS.items():
        for k in settings.snr_ks:
            if estimator == GE.VIMCO and k < 2:
                continue
            point = measure_point(
                model,
                label,
                estimator,
                k,
                settings.snr_draws,
                (settings.seed, 17),
                settings.gradient_chunk_size,
            )
            points.append(point)
            progress(
                f"{estimator.name} K={k}: "
                + ", ".join(f"SNR {g} {fmt(point[f'snr_{g}'])}" for g in model.groups)
            )
    return points


def fit_slopes(points, groups, floor):
    """Per estimator and group: slope over all K and between the two largest."""
    slopes = []
    for label, estimator in ESTIMATORS.items():
        mine = [p for p in points if p["estimator"] == estimator.name]
        row = dict(estimator=estimator.name, label=label)
        for g in groups:
            ks = [p["K"] for p in mine]
            snrs = [p[f"snr_{g}"] for p in mine]
            row[f"slope_{g}"] = fit_slope(ks, snrs, floor)
            row[f"tail_slope_{g}"] = fit_slope(ks[-2:], snrs[-2:], floor)
        slopes.append(row)
    return slopes


def compute(settings, progress=silent):
    """SNR of the A and b gradients for every estimator and K: a `SnrResult`."""
    model = LinearGaussianModel(
        settings.snr_dim,
        settings.snr_num_data,
        settings.snr_perturbation,
        settings.seed,
    )
    points = measure_points(settings, model, progress)
    floor = 1.0 / np.sqrt(settings.snr_draws)
    return SnrResult(
        dim=settings.snr_dim,
        num_data=settings.snr_num_data,
        perturbation=settings.snr_perturbation,
        num_draws=settings.snr_draws,
        ks=tuple(settings.snr_ks),
        groups=tuple(model.groups),
        points=tuple(points),
        slopes=tuple(fit_slopes(points, model.groups, floor)),
    )


def _snr_table(result, group):
    """SNR of one group: a row per estimator, a column per K."""
    rows = []
    for label, estimator in ESTIMATORS.items():
        by_k = {p["K"]: p for p in result.points if p["estimator"] == estimator.name}
        cells = [
            _cell(by_k[k][f"snr_{group}"], result.noise_floor) if k in by_k else "-"
            for k in result.ks
        ]
        rows.append([label, *cells])
    table = markdown_table(["estimator", *(f"K={k}" for k in result.ks)], rows)
    return f"SNR of the `{group}` gradient:\n\n{table}"


def _slope_table(result):
    """Fitted slopes: a row per estimator, two columns per group."""
    header = ["estimator"]
    for g in result.groups:
        header += [f"slope {g}", f"tail slope {g}"]
    rows = []
    for r in result.slopes:
        cells = [r["label"]]
        for g in result.groups:
            cells += [fmt(r[f"slope_{g}"], 2), fmt(r[f"tail_slope_{g}"], 2)]
        rows.append(cells)
    return markdown_table(header, rows)


def render(result):
    """The section's Markdown: setup, SNR tables per group, slope table."""
    return "\n".join(
        [
            f"D = {result.dim}, minibatch of {result.num_data} points, "
            f"parameters perturbed from the optimum by N(0, "
            f"{result.perturbation:g}^2), {result.num_draws} gradient draws per "
            f"point (noise floor 1/sqrt(draws) = {result.noise_floor:.3g}). SNR: "
            "root mean square over the group's elements of |mean| / sd, with the "
            "squared mean debiased; in parentheses when below the noise floor "
            "(not resolved, left out of the slopes), `-` where the debiased "
            "square is not positive.",
            "",
            *[_snr_table(result, g) + "\n" for g in result.groups],
            "Slopes of log SNR against log K (least squares over the K above the "
            "noise floor; *tail*: between the two largest K). Theory: IWAE -0.5, "
            "DReG +0.5 (large K).",
            "",
            _slope_table(result),
        ]
    )


def summarize(result):
    """The slopes of the `A` gradient's SNR of IWAE, DReG and VIMCO."""
    by_name = {r["estimator"]: r for r in result.slopes}
    return [
        (
            "SNR slopes (A)",
            ", ".join(
                f"{name} {fmt(by_name[name]['slope_A'], 2)}"
                for name in ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "VIMCO")
            ),
        )
    ]


def _cell(value, floor):
    text = fmt(value)
    return f"({text})" if value is not None and value < floor else text


def _plot_group(ax, result, group):
    """Log-log SNR of one group against K, with reference slopes and floor."""
    ks_all = np.asarray(result.ks, float)
    for label, estimator in ESTIMATORS.items():
        mine = [p for p in result.points if p["estimator"] == estimator.name]
        ax.plot(
            [p["K"] for p in mine],
            [p[f"snr_{group}"] for p in mine],
            marker="o",
            label=label,
        )
    # Reference slopes through IWAE's first and DReG's last point.
    iwae = [p for p in result.points if p["estimator"] == "REPARAMETERIZATION"][0]
    dreg = [p for p in result.points if p["estimator"] == "DOUBLY_REPARAMETERIZED"]
    for power, style, anchor in ((-0.5, ":", iwae), (0.5, "-.", dreg[-1])):
        ax.plot(
            ks_all,
            anchor[f"snr_{group}"] * (ks_all / anchor["K"]) ** power,
            color="gray",
            linestyle=style,
            linewidth=0.8,
            label=f"K^{power:+g}",
        )
    ax.axhline(result.noise_floor, color="black", linewidth=0.6, label="1/sqrt(draws)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K (importance_sample_size)")
    ax.set_ylabel(f"SNR of grad {group} (RMS over elements)")
    ax.set_title(f"parameter {group}")
    ax.grid(True, which="major", alpha=0.3)


def plot(result, path):
    """Log-log SNR against K, one panel per parameter group."""
    figure, axes = figures.new_figure(ncols=len(result.groups), width=5.0, height=4.0)
    for ax, group in zip(axes, result.groups, strict=True):
        _plot_group(ax, result, group)
    axes[0].legend(fontsize=7)
    figures.save_figure(figure, path)


NAME = "snr_vs_k"
TITLE = "SNR of the inference-network gradient against K"
SECTION = Section(NAME, TITLE, compute, render, summarize, plot, "SNR against K")
