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

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.diagnostics import gradient_moments
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report._common import SectionResult, fmt, new_figure, save_figure
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions

NAME = "snr_vs_k"
TITLE = "SNR of the inference-network gradient against K"
ESTIMATORS = {
    "IWAE (REPARAMETERIZATION)": GE.REPARAMETERIZATION,
    "DReG (DOUBLY_REPARAMETERIZED)": GE.DOUBLY_REPARAMETERIZED,
    "VIMCO": GE.VIMCO,
    "SCORE_FUNCTION": GE.SCORE_FUNCTION,
}


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


def run(settings, progress, out_dir):
    """SNR of the A and b gradients for every estimator and K; slopes and plot."""
    model = LinearGaussianModel(
        settings.snr_dim,
        settings.snr_num_data,
        settings.snr_perturbation,
        settings.seed,
    )
    draws = settings.snr_draws
    groups = [v.name.split(":")[0] for v in model.variables]
    points = []
    for label, estimator in ESTIMATORS.items():
        for k in settings.snr_ks:
            if estimator == GE.VIMCO and k < 2:
                continue

            def loss(seed, estimator=estimator, k=k):
                return monte_carlo_variational_loss(
                    model.target_log_prob,
                    model.surrogate(),
                    importance_sample_size=k,
                    gradient_estimator=estimator,
                    seed=seed,
                )

            moments = tf.function(
                lambda loss=loss: gradient_moments(
                    loss, model.variables, draws, seed=(settings.seed, 17)
                )
            )()
            point = dict(estimator=estimator.name, label=label, K=k)
            for group, m, v, snr in zip(
                groups, moments.mean, moments.variance, moments.snr, strict=True
            ):
                point[f"snr_{group}"] = debiased_rms_snr(m, v, draws)
                point[f"plain_mean_snr_{group}"] = float(tf.reduce_mean(snr))
                point[f"total_variance_{group}"] = float(tf.reduce_sum(v))
            points.append(point)
            progress(
                f"{estimator.name} K={k}: "
                + ", ".join(f"SNR {g} {fmt(point[f'snr_{g}'])}" for g in groups)
            )

    floor = 1.0 / np.sqrt(draws)
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

    data = dict(
        dim=settings.snr_dim,
        num_data=settings.snr_num_data,
        perturbation=settings.snr_perturbation,
        num_draws=draws,
        ks=list(settings.snr_ks),
        groups=groups,
        points=points,
        slopes=slopes,
    )
    plot = f"{NAME}.png"
    plot_snr(data, out_dir / plot)

    header = "| estimator | " + " | ".join(f"K={k}" for k in settings.snr_ks) + " |"
    tables = []
    for g in groups:
        lines = [f"SNR of the `{g}` gradient:", "", header]
        lines.append("|---|" + "---|" * len(settings.snr_ks))
        for label, estimator in ESTIMATORS.items():
            by_k = {p["K"]: p for p in points if p["estimator"] == estimator.name}
            cells = [
                _cell(by_k[k][f"snr_{g}"], floor) if k in by_k else "-"
                for k in settings.snr_ks
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    slope_lines = [
        "| estimator | "
        + " | ".join(f"slope {g} | tail slope {g}" for g in groups)
        + " |",
        "|---|" + "---|---|" * len(groups),
    ]
    for r in slopes:
        slope_lines.append(
            f"| {r['label']} | "
            + " | ".join(
                f"{fmt(r[f'slope_{g}'], 2)} | {fmt(r[f'tail_slope_{g}'], 2)}"
                for g in groups
            )
            + " |"
        )
    markdown = "\n".join(
        [
            f"D = {settings.snr_dim}, minibatch of {settings.snr_num_data} points, "
            f"parameters perturbed from the optimum by N(0, "
            f"{settings.snr_perturbation:g}^2), {draws} gradient draws per point "
            f"(noise floor 1/sqrt(draws) = {floor:.3g}). SNR: root "
            "mean square over the group's elements of |mean| / sd, with the "
            "squared mean debiased; in parentheses when below the noise floor "
            "(not resolved, left out of the slopes), `-` where the debiased "
            "square is not positive.",
            "",
            *[t + "\n" for t in tables],
            "Slopes of log SNR against log K (least squares over the K above the "
            "noise floor; *tail*: between the two largest K). Theory: IWAE -0.5, "
            "DReG +0.5 (large K).",
            "",
            "\n".join(slope_lines),
            "",
            f"![SNR against K]({plot})",
        ]
    )
    by_name = {r["estimator"]: r for r in slopes}
    summary = [
        (
            "SNR slopes (A)",
            ", ".join(
                f"{name} {fmt(by_name[name]['slope_A'], 2)}"
                for name in ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "VIMCO")
            ),
        )
    ]
    return SectionResult(TITLE, markdown, data, summary, [plot])


def _cell(value, floor):
    text = fmt(value)
    return f"({text})" if value is not None and value < floor else text


def plot_snr(data, path):
    """Log-log SNR against K from the section's data (as in report.json)."""
    points, groups = data["points"], data["groups"]
    figure, axes = new_figure(ncols=len(groups), width=5.0, height=4.0)
    ks_all = np.asarray(data["ks"], float)

    def snr(p, g):
        return np.nan if p[f"snr_{g}"] is None else p[f"snr_{g}"]

    for ax, g in zip(axes, groups, strict=True):
        for label, estimator in ESTIMATORS.items():
            mine = [p for p in points if p["estimator"] == estimator.name]
            ax.plot(
                [p["K"] for p in mine],
                [snr(p, g) for p in mine],
                marker="o",
                label=label,
            )
        # Reference slopes through IWAE's first and DReG's last point.
        iwae = [p for p in points if p["estimator"] == "REPARAMETERIZATION"][0]
        dreg = [p for p in points if p["estimator"] == "DOUBLY_REPARAMETERIZED"][-1]
        for power, style, anchor in ((-0.5, ":", iwae), (0.5, "-.", dreg)):
            ax.plot(
                ks_all,
                snr(anchor, g) * (ks_all / anchor["K"]) ** power,
                color="gray",
                linestyle=style,
                linewidth=0.8,
                label=f"K^{power:+g}",
            )
        ax.axhline(
            1 / np.sqrt(data["num_draws"]),
            color="black",
            linewidth=0.6,
            label="1/sqrt(draws)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (importance_sample_size)")
        ax.set_ylabel(f"SNR of grad {g} (RMS over elements)")
        ax.set_title(f"parameter {g}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=7)
    save_figure(figure, path)
