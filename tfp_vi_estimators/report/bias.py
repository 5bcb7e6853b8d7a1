"""Bias of doubly reparameterized gradients: ours and `tfp.vi`'s.

Model (one latent, one decoder parameter):

```none
z ~ N(0, 1),  x | z ~ N(theta z, 0.8^2),  x = 1.5,  q = N(m, s^2)
```

at `m = 0.2`, `s = 0.6`, `theta = 1.3`. The reference is the total-derivative
gradient (REPARAMETERIZATION), unbiased for every discrepancy. Each draw
computes the reference, our DOUBLY_REPARAMETERIZED and `tfp.vi`'s (given the
stopped surrogate it needs) on the *same* samples, so the per-draw
differences `g_estimator - g_reference` pair away most of the noise; the bias
is reported as the z-score `mean(diff) / (sd(diff) / sqrt(N))`. An unbiased
estimator gives |z| of a few at most; `tfp.vi`'s decoder gradient at K > 1
(squared weights) and its phi gradient for discrepancies other than
`kl_reverse` (a dropped `f''` term) give large |z|.

The draws are vectorized in chunks of `bias_chunk_size`: the parameters are
batch-shaped `[chunk]`, each batch member has its own copy and its own
sample, so the gradient with respect to member n is draw n's estimate. Each
chunk is reduced to running moments (`diagnostics.merge_moments`) before the
next is drawn, so memory does not grow with the number of draws.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import csiszar
from tfp_vi_estimators.diagnostics import (
    RunningMoments,
    merge_moments,
    moments_of_draws,
)
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.problems import LIKELIHOOD_SCALE, X_OBSERVED, DecoderProblem
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

DISCREPANCIES = {
    "kl_reverse": csiszar.kl_reverse,
    "kl_forward": csiszar.kl_forward,
    "chi_square": csiszar.chi_square,
    "jensen_shannon": csiszar.jensen_shannon,
    "amari_alpha(0.5)": functools.partial(csiszar.amari_alpha, alpha=0.5),
}
# The decoder problem's parameters (m, s, theta) where the gradients are taken.
PARAMETERS = dict(loc=0.2, scale=0.6, theta=1.3)
VARIABLES = ("m", "log_s", "theta")
IMPLEMENTATIONS = ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "tfp.vi")
# What is accumulated per variable, in this order: the three implementations'
# draws and the two paired differences from the reference.
STREAMS = ("reference", "ours", "tfp", "ours - reference", "tfp - reference")


@dataclasses.dataclass(frozen=True)
class BiasResult:
    """z-scores of ours and tfp.vi's DReG against the total derivative.

    Attributes:
      num_draws: paired draws per row.
      model: the decoder problem's parameters, observation and noise scale.
      rows: one dict per (discrepancy, K, variable): means of the reference,
        ours and tfp.vi's, the z-scores of both against the reference, and
        the ratio of our standard deviation to the reference's.
      max_abs_z_ours, max_abs_z_tfp: the largest |z| over all rows.
    """

    num_draws: int
    model: dict
    rows: tuple
    max_abs_z_ours: float
    max_abs_z_tfp: float


def per_draw_gradients(problem, implementation, k, discrepancy_fn, seed):
    """`[batch]` gradient draws per variable of one implementation."""
    kwargs = dict(
        sample_size=1,
        importance_sample_size=k,
        discrepancy_fn=discrepancy_fn,
        seed=seed,
    )
    if implementation == "tfp.vi":
        loss_fn = functools.partial(
            tfp.vi.monte_carlo_variational_loss,
            gradient_estimator=tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED,
            stopped_surrogate_posterior=problem.stopped_surrogate(),
        )
    else:
        loss_fn = functools.partial(
            monte_carlo_variational_loss, gradient_estimator=GE[implementation]
        )
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(
            loss_fn(problem.target_log_prob, problem.surrogate, **kwargs)
        )
    return tape.gradient(loss, problem.variables)


def z_score(moments):
    """mean / standard error of `RunningMoments`; 0 for identical draws."""
    mean = float(moments.mean)
    se = float(np.sqrt(moments.variance / moments.count))
    if se == 0.0:
        return 0.0 if mean == 0.0 else float(np.sign(mean) * np.inf)
    return mean / se


def chunk_moments(gradients, kept):
    """Per variable, `RunningMoments` of the `STREAMS` of one chunk's draws.

    `gradients[impl][i]` is variable i's `[chunk]` draws of an implementation;
    only the first `kept` draws are counted.
    """
    moments = []
    for i in range(len(VARIABLES)):
        reference, ours, theirs = (
            gradients[impl][i][:kept] for impl in IMPLEMENTATIONS
        )
        streams = tf.stack(
            [reference, ours, theirs, ours - reference, theirs - reference]
        )
        moments.append(moments_of_draws(streams, axis=1))
    return moments


def compare_moments(moments):
    """Means, z-scores and sd ratio of one variable from its streams' moments."""
    by = {
        name: RunningMoments(moments.count, moments.mean[j], moments.m2[j])
        for j, name in enumerate(STREAMS)
    }
    ref_variance = float(by["reference"].variance)
    return dict(
        reference_mean=float(by["reference"].mean),
        reference_se=float(np.sqrt(ref_variance / float(moments.count))),
        ours_mean=float(by["ours"].mean),
        tfp_mean=float(by["tfp"].mean),
        z_ours=z_score(by["ours - reference"]),
        z_tfp=z_score(by["tfp - reference"]),
        sd_ratio_ours=float(np.sqrt(by["ours"].variance / ref_variance))
        if ref_variance > 0
        else float("nan"),
    )


def measure_case(problem, d_name, k, num_draws, seed):
    """One row per variable for one discrepancy and K, all on the same draws.

    The draws come in chunks of the problem's batch size, one seed per chunk.
    """
    chunk = int(problem.loc.shape[0])
    num_chunks = -(-num_draws // chunk)
    totals = None
    for c, chunk_seed in enumerate(tfp.random.split_seed(seed, n=num_chunks)):
        gradients = {
            impl: per_draw_gradients(
                problem, impl, k, DISCREPANCIES[d_name], chunk_seed
            )
            for impl in IMPLEMENTATIONS
        }
        moments = chunk_moments(gradients, min(chunk, num_draws - c * chunk))
        totals = (
            moments if totals is None else list(map(merge_moments, totals, moments))
        )
    return [
        dict(discrepancy=d_name, K=k, variable=var, **compare_moments(m))
        for var, m in zip(VARIABLES, totals, strict=True)
    ]


def compute(settings, progress=silent):
    """z-scores of ours and tfp.vi's DReG for every discrepancy and K."""
    chunk = min(settings.bias_chunk_size, settings.bias_draws)
    problem = DecoderProblem(chunk, **PARAMETERS)
    rows = []
    for d_name in DISCREPANCIES:
        for k in settings.bias_ks:
            seed = (settings.seed + 7, 11 + k)
            case = measure_case(problem, d_name, k, settings.bias_draws, seed)
            rows += case
            progress(
                f"{d_name} K={k}: largest abs z ours "
                f"{max(abs(r['z_ours']) for r in case):.1f}, "
                f"tfp.vi {max(abs(r['z_tfp']) for r in case):.1f}"
            )
    return BiasResult(
        num_draws=settings.bias_draws,
        model=dict(**PARAMETERS, x=X_OBSERVED, likelihood_scale=LIKELIHOOD_SCALE),
        rows=tuple(rows),
        max_abs_z_ours=max(abs(r["z_ours"]) for r in rows),
        max_abs_z_tfp=max(abs(r["z_tfp"]) for r in rows),
    )


def render(result):
    """The section's Markdown: how to read it, and a row per case and variable."""
    table = markdown_table(
        [
            "discrepancy",
            "K",
            "parameter",
            "reference mean",
            "ours mean",
            "tfp.vi mean",
            "z ours",
            "z tfp.vi",
            "sd ours / sd reference",
        ],
        [
            [
                r["discrepancy"],
                str(r["K"]),
                r["variable"],
                fmt(r["reference_mean"], 4),
                fmt(r["ours_mean"], 4),
                fmt(r["tfp_mean"], 4),
                f"{r['z_ours']:+.1f}",
                f"{r['z_tfp']:+.1f}",
                fmt(r["sd_ratio_ours"], 2),
            ]
            for r in result.rows
        ],
    )
    return "\n".join(
        [
            f"{result.num_draws} paired draws per row; `m`, `log_s` are the "
            "surrogate's parameters, `theta` the decoder's. z: mean paired "
            "difference from the total-derivative (REPARAMETERIZATION) gradient "
            "in standard errors; |z| below about 4 is consistent with no bias (the "
            f"tests use 4.5). Largest |z|: ours {result.max_abs_z_ours:.1f}, "
            f"tfp.vi {result.max_abs_z_tfp:.1f}.",
            "",
            table,
        ]
    )


def summarize(result):
    """The largest |z| of ours and of tfp.vi's."""
    return [
        (
            "largest abs z (bias)",
            f"ours {result.max_abs_z_ours:.1f}, tfp.vi {result.max_abs_z_tfp:.1f}",
        )
    ]


NAME = "bias"
TITLE = "Bias of DOUBLY_REPARAMETERIZED: ours against tfp.vi"
SECTION = Section(NAME, TITLE, compute, render, summarize)
