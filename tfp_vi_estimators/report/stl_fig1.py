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

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.report._common import SectionResult, fmt, new_figure, save_figure
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions
tfb = tfp.bijectors

NAME = "stl_fig1"
TITLE = "Sticking the landing: fitting a Gaussian (Roeder et al. 2017, Fig. 1)"
ESTIMATORS = {
    "total derivative (REPARAMETERIZATION)": GE.REPARAMETERIZATION,
    "path derivative (DOUBLY_REPARAMETERIZED)": GE.DOUBLY_REPARAMETERIZED,
}


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


def run(settings, progress, out_dir):
    """Fits with both estimators (SGD, and Adam if configured); KL curves and plot."""
    target, condition = make_target(settings.fig1_dim, settings.seed)
    optimizers = {
        "SGD": (
            settings.fig1_steps,
            lambda: tf.keras.optimizers.SGD(settings.fig1_learning_rate),
            settings.fig1_learning_rate,
        )
    }
    if settings.fig1_adam_steps:
        optimizers["Adam"] = (
            settings.fig1_adam_steps,
            lambda: tf.keras.optimizers.Adam(settings.fig1_adam_learning_rate),
            settings.fig1_adam_learning_rate,
        )
    every = settings.fig1_record_every
    curves = []
    for opt_name, (steps, make_optimizer, rate) in optimizers.items():
        for label, estimator in ESTIMATORS.items():
            progress(f"{estimator.name} with {opt_name}({rate:g}), {steps} steps")
            kls = fit(target, estimator, make_optimizer(), steps, every, settings.seed)
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

    rows = []
    for opt_name in optimizers:
        by = {c["estimator"]: c for c in curves if c["optimizer"] == opt_name}
        total = by["REPARAMETERIZATION"]["kl"]
        path = by["DOUBLY_REPARAMETERIZED"]["kl"]
        # "Stalls": the last half of the run improves KL by less than 2x.
        half = len(total) // 2
        rows.append(
            dict(
                optimizer=opt_name,
                learning_rate=by["REPARAMETERIZATION"]["learning_rate"],
                steps=by["REPARAMETERIZATION"]["steps"][-1],
                final_kl_total=total[-1],
                final_kl_path=path[-1],
                ratio_total_over_path=_ratio(total[-1], path[-1]),
                halving_gain_total=_ratio(total[half], total[-1]),
                halving_gain_path=_ratio(path[half], path[-1]),
            )
        )

    plot = f"{NAME}.png"
    data = dict(
        dim=settings.fig1_dim,
        target_condition_number=condition,
        record_every=every,
        results=rows,
        curves=curves,
    )
    plot_curves(data, out_dir / plot)

    table = [
        "| optimizer | steps | final KL total derivative | final KL path derivative "
        "| ratio | KL gain over last half: total | path |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['optimizer']}({r['learning_rate']:g}) | {r['steps']} | "
            f"{fmt(r['final_kl_total'])} | {fmt(r['final_kl_path'])} | "
            f"{fmt(r['ratio_total_over_path'])} | {fmt(r['halving_gain_total'])}x | "
            f"{fmt(r['halving_gain_path'])}x |"
        )
    markdown = "\n".join(
        [
            f"Target: {settings.fig1_dim}-d Gaussian with a random full covariance "
            f"(condition number {condition:.3g}); surrogate: full-rank Gaussian "
            "from N(0, I), `sample_size = 1`, float64, same seeds for both "
            "estimators. KL(q || p) is exact (closed form). *Gain over last half*: "
            "KL at mid-run divided by the final KL (about 1x means stalled).",
            "",
            "\n".join(table),
            "",
            f"![KL against steps]({plot})",
        ]
    )
    sgd = rows[0]
    summary = [
        (
            "final KL (SGD)",
            f"total {fmt(sgd['final_kl_total'])}, path {fmt(sgd['final_kl_path'])}, "
            f"ratio {fmt(sgd['ratio_total_over_path'])}",
        )
    ]
    if len(rows) > 1:
        summary.append(
            (
                "final KL (Adam)",
                f"total {fmt(rows[1]['final_kl_total'])}, path "
                f"{fmt(rows[1]['final_kl_path'])}, ratio "
                f"{fmt(rows[1]['ratio_total_over_path'])}",
            )
        )
    return SectionResult(TITLE, markdown, data, summary, [plot])


def plot_curves(data, path):
    """KL against steps from the section's data (as in report.json)."""
    figure, (ax,) = new_figure(width=7.0, height=4.5)
    colors = {"REPARAMETERIZATION": "tab:red", "DOUBLY_REPARAMETERIZED": "tab:blue"}
    for c in data["curves"]:
        kl = np.array([np.nan if v is None else v for v in c["kl"]], float)
        ax.plot(
            c["steps"],
            np.maximum(kl, 1e-16),
            color=colors[c["estimator"]],
            linestyle="-" if c["optimizer"] == "SGD" else "--",
            label=f"{c['label']}, {c['optimizer']}({c['learning_rate']:g})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("KL(q || p), exact")
    ax.set_title(f"{data['dim']}-d full-rank Gaussian, sample_size = 1 (floor 1e-16)")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    save_figure(figure, path)


def _ratio(a, b):
    return a / b if b > 0 else float("inf")
