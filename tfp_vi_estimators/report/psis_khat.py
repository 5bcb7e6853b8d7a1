"""PSIS k-hat of the surrogate each gradient estimator fits (Yao et al. 2018).

Two targets, each fitted with a mean-field and a full-rank Gaussian surrogate
by every estimator of `CONFIGURATIONS` (16 target evaluations per step):

- `gaussian-{psis_gaussian_dim}d`: the report's correlated Gaussian
  (`problems.gaussian`, covariance `A A^T / d + I / 2`); a full-rank
  surrogate can equal it, a mean-field one cannot (reverse KL makes it too
  narrow along the correlations);
- `logistic-regression`: the posterior of a Bayesian logistic regression
  (`N(0, 1)` prior on `psis_logistic_dim` weights, `psis_logistic_data`
  synthetic points from the model, seeded by the report's seed), which no
  Gaussian equals.

Each fit is `fit_surrogate_posterior` from `N(0, I)` for `psis_steps` Adam
steps with a cosine-decayed rate (so the last iterate sits near the
estimator's fixed point rather than jittering around it), the same seed for
every estimator. Then `psis.khat_rows` draws `psis_num_draws` from each
fitted surrogate (common seed) and reads k-hat against the thresholds of
Vehtari et al. (2024): below 0.5 good, up to `min(1 - 1/log10 S, 0.7)` usable
after PSIS, above it not reliable.

Fits run without XLA: a few hundred steps of these small problems take less
time than compiling them.
"""

import dataclasses
import typing

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import problems, psis
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.fitting import fit_surrogate_posterior
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section

tfd = tfp.distributions
tfb = tfp.bijectors

# label -> (estimator, sample_size, importance_sample_size); S * K = 16.
CONFIGURATIONS = {
    "REPARAMETERIZATION S=16": (GE.REPARAMETERIZATION, 16, 1),
    "DOUBLY_REPARAMETERIZED S=16": (GE.DOUBLY_REPARAMETERIZED, 16, 1),
    "SCORE_FUNCTION S=16": (GE.SCORE_FUNCTION, 16, 1),
    "DOUBLY_REPARAMETERIZED S=2 K=8": (GE.DOUBLY_REPARAMETERIZED, 2, 8),
}
SURROGATES = ("mean-field", "full-rank")


class Target(typing.NamedTuple):
    """A target of the section: name, description, log-density, dimension."""

    name: str
    description: str
    log_prob_fn: typing.Callable
    dim: int


@dataclasses.dataclass(frozen=True)
class KhatResult:
    """k-hat of every fitted surrogate.

    Attributes:
      steps: optimizer steps per fit.
      num_draws: PSIS draws per surrogate.
      threshold: `psis.khat_threshold(num_draws)`, the reliability threshold.
      targets: one dict per target: `name`, `description`.
      rows: one dict per fit: `target`, `surrogate` (mean-field or full-rank),
        `estimator` (a `CONFIGURATIONS` label), `pareto_k`, `verdict`,
        `final_loss` (mean loss over the last tenth of the steps).
    """

    steps: int
    num_draws: int
    threshold: float
    targets: tuple
    rows: tuple


def gaussian_target(dim, seed=0):
    """The report's correlated Gaussian (`problems.gaussian`) as a `Target`."""
    problem = problems.gaussian(dim, seed=seed)
    return Target(problem.name, problem.description, problem.target_log_prob_fn, dim)


def logistic_regression_target(num_data, dim, seed=0):
    """Posterior of a logistic regression on synthetic data, as a `Target`.

    ```none
    w ~ N(0, I_dim);  x_n ~ N(0, I_dim);  y_n ~ Bernoulli(sigmoid(x_n . w_true))
    log p(w, y) = sum_j log N(w_j; 0, 1) + sum_n log Bernoulli(y_n; x_n . w)
    ```
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_data, dim)).astype(np.float32)
    true_weights = rng.normal(size=dim)
    labels = rng.uniform(size=num_data) < 1.0 / (1.0 + np.exp(-features @ true_weights))
    labels = labels.astype(np.float32)

    def log_prob_fn(weights):
        prior = tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(weights), axis=-1)
        logits = tf.einsum("nd,...d->...n", features, weights)
        likelihood = tfd.Bernoulli(logits=logits).log_prob(labels)
        return prior + tf.reduce_sum(likelihood, axis=-1)

    return Target(
        "logistic-regression",
        f"Bayesian logistic regression, {dim} weights with N(0, 1) priors, "
        f"{num_data} synthetic points",
        log_prob_fn,
        dim,
    )


def targets(settings):
    """The section's targets at the sizes of `settings`."""
    return [
        gaussian_target(settings.psis_gaussian_dim, settings.seed),
        logistic_regression_target(
            settings.psis_logistic_data, settings.psis_logistic_dim, settings.seed
        ),
    ][: settings.psis_max_targets]


def make_surrogate(kind, dim):
    """A `'mean-field'` or `'full-rank'` Gaussian surrogate at `N(0, I)`."""
    loc = tf.Variable(tf.zeros([dim]), name="loc")
    if kind == "mean-field":
        scale = tfp.util.TransformedVariable(tf.ones([dim]), tfb.Softplus())
        return tfd.Independent(tfd.Normal(loc, scale), 1)
    scale_tril = tfp.util.TransformedVariable(tf.eye(dim), tfb.FillScaleTriL())
    return tfd.MultivariateNormalTriL(loc, scale_tril)


def fit(target, kind, configuration, settings):
    """`(fitted surrogate, mean loss over the last tenth of the steps)`."""
    estimator, sample_size, importance_sample_size = configuration
    surrogate = make_surrogate(kind, target.dim)
    rate = tf.keras.optimizers.schedules.CosineDecay(
        settings.psis_learning_rate, settings.psis_steps, alpha=0.05
    )
    losses = fit_surrogate_posterior(
        target.log_prob_fn,
        surrogate,
        tf.keras.optimizers.Adam(rate),
        settings.psis_steps,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        gradient_estimator=estimator,
        jit_compile=False,
        seed=(settings.seed, 16),
    )
    last = max(1, settings.psis_steps // 10)
    return surrogate, float(np.mean(losses.numpy()[-last:]))


def target_rows(target, settings, progress=silent):
    """k-hat rows of every surrogate kind and configuration on one target."""
    configurations = dict(list(CONFIGURATIONS.items())[: settings.psis_max_configs])
    rows = []
    for kind in SURROGATES[: settings.psis_max_surrogates]:
        fitted, losses = {}, {}
        for label, configuration in configurations.items():
            progress(f"{target.name}, {kind}: fitting with {label}")
            fitted[label], losses[label] = fit(target, kind, configuration, settings)
        for row in psis.khat_rows(
            target.log_prob_fn,
            fitted,
            num_draws=settings.psis_num_draws,
            seed=(settings.seed, 2024),
        ):
            rows.append(
                dict(
                    target=target.name,
                    surrogate=kind,
                    estimator=row["surrogate"],
                    pareto_k=row["pareto_k"],
                    verdict=row["verdict"],
                    final_loss=losses[row["surrogate"]],
                )
            )
    return rows


def compute(settings, progress=silent):
    """Fits every surrogate with every estimator and reads k-hat: a `KhatResult`."""
    chosen = targets(settings)
    rows = []
    for target in chosen:
        rows += target_rows(target, settings, progress)
    return KhatResult(
        steps=settings.psis_steps,
        num_draws=settings.psis_num_draws,
        threshold=psis.khat_threshold(settings.psis_num_draws),
        targets=tuple(dict(name=t.name, description=t.description) for t in chosen),
        rows=tuple(rows),
    )


def render(result):
    """The section's Markdown: the thresholds, and k-hat (verdict) per fit."""
    columns = list(dict.fromkeys((r["target"], r["surrogate"]) for r in result.rows))
    estimators = list(dict.fromkeys(r["estimator"] for r in result.rows))
    by = {(r["target"], r["surrogate"], r["estimator"]): r for r in result.rows}
    header = ["estimator"] + [f"{t} {s}" for t, s in columns]
    khat_table, loss_table = (
        markdown_table(
            header,
            [
                [label] + [cell(by.get((t, s, label))) for t, s in columns]
                for label in estimators
            ],
        )
        for cell in (_cell, _loss_cell)
    )
    described = "; ".join(f"*{t['name']}*: {t['description']}" for t in result.targets)
    return "\n".join(
        [
            f"{described}. Each surrogate (mean-field or full-rank Gaussian, from "
            f"N(0, I)) is fitted by `fit_surrogate_posterior` for {result.steps} "
            "Adam steps (cosine-decayed rate, the same seed for every "
            f"estimator); k-hat from {result.num_draws} draws of the fitted "
            "surrogate (`psis.khat_rows`, the same draws' seed for all).",
            "",
            "k-hat is the shape of the generalized Pareto distribution fitted to "
            "the largest importance ratios p(z) / q(z) (Vehtari et al. 2024): "
            "below 0.5 (*good*) the surrogate is close to the target and the "
            "ratios have finite variance; up to "
            f"min(1 - 1/log10 S, 0.7) = {result.threshold:.2f} at S = "
            f"{result.num_draws} (*ok*) "
            "PSIS-corrected estimates are still reliable; above it (*bad*) the "
            "surrogate misses mass of the target and is not reliable "
            "(Yao et al. 2018).",
            "",
            khat_table,
            "",
            "Final loss of each fit (mean over the last tenth of the steps; the "
            "IWAE bound's at K = 8), to tell a surrogate the family cannot make "
            "closer from a fit that has not converged:",
            "",
            loss_table,
        ]
    )


def _cell(row):
    if row is None:
        return "-"
    return f"{_khat_text(row['pareto_k'])} ({row['verdict']})"


def _loss_cell(row):
    return "-" if row is None else fmt(row["final_loss"], 4)


def _khat_text(pareto_k):
    """k-hat to 2 digits; `-inf` (all ratios equal: q is the target) and `inf`
    (too few ratios above the tail's cutoff to fit) spelled out."""
    return fmt(pareto_k, 2) if np.isfinite(pareto_k) else str(float(pareto_k))


def summarize(result):
    """Counts of each verdict, and the largest k-hat with its fit."""
    counts = {v: sum(r["verdict"] == v for r in result.rows) for v in _VERDICTS}
    worst = max(result.rows, key=lambda r: r["pareto_k"])
    return [
        ("verdicts", ", ".join(f"{v} {n}" for v, n in counts.items())),
        (
            "largest k-hat",
            f"{_khat_text(worst['pareto_k'])}: {worst['estimator']}, "
            f"{worst['target']} {worst['surrogate']}",
        ),
    ]


_VERDICTS = ("good", "ok", "bad")

NAME = "psis_khat"
TITLE = "Is the fitted surrogate good enough? PSIS k-hat of each estimator's fit"
SECTION = Section(NAME, TITLE, compute, render, summarize)
