"""Roeder et al. (2017) Fig. 1: a 100-d Gaussian surrogate fitted to a Gaussian.

Target: `N(mu, Sigma)` in `fig1_dim` dimensions with a random mean and a
random full covariance (`Sigma = A A^T / d + I / 2`); surrogate: a full-rank
Gaussian `N(m, L L^T)` started at `N(0, I)`, parameterized as `tfp.vi` users
do (`loc` and a `FillScaleTriL` transformed variable). Both estimators fit it
with `sample_size = 1`, the same optimizer and the same per-step seeds:
REPARAMETERIZATION (the total derivative) and DOUBLY_REPARAMETERIZED (at
K = 1, the path derivative: sticking the landing). Recorded: the exact
`KL(q || p)` in closed form against the step.

The paper does not state whether its surrogate was diagonal or full-rank, nor
its optimizer; full rank is the harder case for the total derivative (its score
term's variance grows with the Fisher information of q). The main curves use
plain SGD with a fixed rate, where the contrast is cleanest: the path
derivative's variance vanishes at the optimum, so it converges linearly to
float64 precision, while the total derivative settles at a noise floor set by
the rate. An optional Adam run shows that an adaptive optimizer (whose step
stays about `learning_rate` in size however small the gradient) stalls both,
the path derivative much lower.

Every `fig1_record_every` steps run inside one `tf.function(jit_compile=True)`
loop, so the host reads back only the KL, once per record.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report import figures
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions
tfb = tfp.bijectors

ESTIMATORS = {
    "total derivative (REPARAMETERIZATION)": GE.REPARAMETERIZATION,
    "path derivative (DOUBLY_REPARAMETERIZED)": GE.DOUBLY_REPARAMETERIZED,
}


@dataclasses.dataclass(frozen=True)
class Fig1Result:
    """KL curves of both estimators under each optimizer, and their comparison.

    Attributes:
      dim: dimension of the target.
      target_condition_number: condition number of the target's covariance.
      record_every: steps between two recorded KL values.
      results: one dict per optimizer: final KLs of both estimators, their
        ratio, and each one's KL gain over the last half of the run.
      curves: one dict per (optimizer, estimator): `steps` and `kl`.
    """

    dim: int
    target_condition_number: float
    record_every: int
    results: tuple
    curves: tuple


def make_target(dim, seed):
    """Random Gaussian target in float64 (so KL is resolved to ~1e-14)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    cov = a @ a.T + 0.5 * np.eye(dim)
    return tfd.MultivariateNormalTriL(
        tf.constant(rng.normal(size=dim), tf.float64),
        tf.constant(np.linalg.cholesky(cov), tf.float64),
    ), float(np.linalg.cond(cov))


def fit(target, estimator, optimizer, steps, record_every, seed):
    """KL(q || p) at step 0 and after every `record_every` steps."""
    dim = target.event_shape[0]
    loc = tf.Variable(tf.zeros([dim], tf.float64), name="loc")
    scale_tril = tfp.util.TransformedVariable(
        tf.eye(dim, dtype=tf.float64), tfb.FillScaleTriL(diag_shift=None)
    )
    surrogate = tfd.MultivariateNormalTriL(loc, scale_tril)
    variables = [loc, *scale_tril.trainable_variables]
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def run_chunk(first_step):
        for i in tf.range(record_every):
            with tf.GradientTape() as tape:
                loss = monte_carlo_variational_loss(
                    target.log_prob,
                    surrogate,
                    sample_size=1,
                    gradient_estimator=estimator,
                    seed=tf.stack([seed, first_step + i]),
                )
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
        return surrogate.kl_divergence(target)

    kls = [float(surrogate.kl_divergence(target))]
    for chunk in range(steps // record_every):
        kls.append(float(run_chunk(tf.constant(chunk * record_every))))
    return kls


def optimizer_runs(settings):
    """`[(optimizer name, steps, learning rate)]`: SGD, and Adam if configured."""
    runs = [("SGD", settings.fig1_steps, settings.fig1_learning_rate)]
    if settings.fig1_adam_steps:
        runs.append(
            ("Adam", settings.fig1_adam_steps, settings.fig1_adam_learning_rate)
        )
    return runs


def fit_curves(settings, target, progress):
    """One KL curve per optimizer run and estimator (a dict each)."""
    every = settings.fig1_record_every
    curves = []
    for opt_name, steps, rate in optimizer_runs(settings):
        for label, estimator in ESTIMATORS.items():
            progress(f"{estimator.name} with {opt_name}({rate:g}), {steps} steps")
            optimizer = getattr(tf.keras.optimizers, opt_name)(rate)
            kls = fit(target, estimator, optimizer, steps, every, settings.seed)
            curves.append(
                dict(
                    optimizer=opt_name,
                    learning_rate=rate,
                    estimator=estimator.name,
                    label=label,
                    steps=list(range(0, (len(kls) - 1) * every + 1, every)),
                    kl=kls,
                )
            )
            progress(f"  final KL(q || p) = {kls[-1]:.3g}")
    return curves


def compare_curves(curves, opt_name):
    """Final KLs and last-half gains of both estimators under one optimizer."""
    by = {c["estimator"]: c for c in curves if c["optimizer"] == opt_name}
    total = by["REPARAMETERIZATION"]["kl"]
    path = by["DOUBLY_REPARAMETERIZED"]["kl"]
    # "Stalls": the last half of the run improves KL by less than 2x.
    half = len(total) // 2
    return dict(
        optimizer=opt_name,
        learning_rate=by["REPARAMETERIZATION"]["learning_rate"],
        steps=by["REPARAMETERIZATION"]["steps"][-1],
        final_kl_total=total[-1],
        final_kl_path=path[-1],
        ratio_total_over_path=_ratio(total[-1], path[-1]),
        halving_gain_total=_ratio(total[half], total[-1]),
        halving_gain_path=_ratio(path[half], path[-1]),
    )


def compute(settings, progress=silent):
    """Fits with both estimators (SGD, and Adam if configured): a `Fig1Result`."""
    target, condition = make_target(settings.fig1_dim, settings.seed)
    curves = fit_curves(settings, target, progress)
    optimizers = dict.fromkeys(c["optimizer"] for c in curves)
    return Fig1Result(
        dim=settings.fig1_dim,
        target_condition_number=condition,
        record_every=settings.fig1_record_every,
        results=tuple(compare_curves(curves, name) for name in optimizers),
        curves=tuple(curves),
    )


def render(result):
    """The section's Markdown: setup and a table of final KLs per optimizer."""
    table = markdown_table(
        [
            "optimizer",
            "steps",
            "final KL total derivative",
            "final KL path derivative",
            "ratio",
            "KL gain over last half: total",
            "path",
        ],
        [
            [
                f"{r['optimizer']}({r['learning_rate']:g})",
                str(r["steps"]),
                fmt(r["final_kl_total"]),
                fmt(r["final_kl_path"]),
                fmt(r["ratio_total_over_path"]),
                f"{fmt(r['halving_gain_total'])}x",
                f"{fmt(r['halving_gain_path'])}x",
            ]
            for r in result.results
        ],
    )
    return "\n".join(
        [
            f"Target: {result.dim}-d Gaussian with a random full covariance "
            f"(condition number {result.target_condition_number:.3g}); surrogate: "
            "full-rank Gaussian from N(0, I), `sample_size = 1`, float64, same "
            "seeds for both estimators. KL(q || p) is exact (closed form). *Gain "
            "over last half*: KL at mid-run divided by the final KL (about 1x "
            "means stalled).",
            "",
            table,
        ]
    )


def summarize(result):
    """Final KLs of both estimators and their ratio, per optimizer."""
    return [
        (
            f"final KL ({r['optimizer']})",
            f"total {fmt(r['final_kl_total'])}, path {fmt(r['final_kl_path'])}, "
            f"ratio {fmt(r['ratio_total_over_path'])}",
        )
        for r in result.results
    ]


def plot(result, path):
    """KL against steps, log scale, one line per optimizer and estimator."""
    figure, (ax,) = figures.new_figure(width=7.0, height=4.5)
    colors = {"REPARAMETERIZATION": "tab:red", "DOUBLY_REPARAMETERIZED": "tab:blue"}
    for c in result.curves:
        ax.plot(
            c["steps"],
            np.maximum(np.array(c["kl"], float), 1e-16),
            color=colors[c["estimator"]],
            linestyle="-" if c["optimizer"] == "SGD" else "--",
            label=f"{c['label']}, {c['optimizer']}({c['learning_rate']:g})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("KL(q || p), exact")
    ax.set_title(f"{result.dim}-d full-rank Gaussian, sample_size = 1 (floor 1e-16)")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    figures.save_figure(figure, path)


def _ratio(a, b):
    return a / b if b > 0 else float("inf")


NAME = "stl_fig1"
TITLE = "Sticking the landing: fitting a Gaussian (Roeder et al. 2017, Fig. 1)"
SECTION = Section(NAME, TITLE, compute, render, summarize, plot, "KL against steps")
