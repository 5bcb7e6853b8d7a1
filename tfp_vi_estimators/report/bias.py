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

All draws come from one vectorized call: the parameters are batch-shaped
`[N]`, each batch member has its own copy and its own sample, so the gradient
with respect to member n is draw n's estimate.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import csiszar
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.problems import LIKELIHOOD_SCALE, X_OBSERVED, DecoderProblem
from tfp_vi_estimators.report._common import SectionResult, fmt
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

tfd = tfp.distributions

NAME = "bias"
TITLE = "Bias of DOUBLY_REPARAMETERIZED: ours against tfp.vi"
DISCREPANCIES = {
    "kl_reverse": csiszar.kl_reverse,
    "kl_forward": csiszar.kl_forward,
    "chi_square": csiszar.chi_square,
    "jensen_shannon": csiszar.jensen_shannon,
    "amari_alpha(0.5)": functools.partial(csiszar.amari_alpha, alpha=0.5),
}


def per_draw_gradients(problem, implementation, k, discrepancy_fn, seed):
    """`[num_draws]` gradient draws per variable of one implementation."""
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
    return [g.numpy() for g in tape.gradient(loss, problem.variables)]


def z_score(differences):
    """mean / standard error; 0 for identical draws."""
    se = differences.std(ddof=1) / np.sqrt(differences.size)
    mean = differences.mean()
    if se == 0.0:
        return 0.0 if mean == 0.0 else float(np.sign(mean) * np.inf)
    return float(mean / se)


def run(settings, progress, out_dir):
    """z-scores of ours and tfp.vi's DReG against the total derivative (no plot)."""
    del out_dir  # no plot
    num_draws = settings.bias_draws
    problem = DecoderProblem(num_draws)
    names = ["m", "log_s", "theta"]
    rows = []
    for d_name, discrepancy_fn in DISCREPANCIES.items():
        for k in settings.bias_ks:
            seed = (settings.seed + 7, 11 + k)
            grads = {
                impl: per_draw_gradients(problem, impl, k, discrepancy_fn, seed)
                for impl in ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "tfp.vi")
            }
            for i, var in enumerate(names):
                reference = grads["REPARAMETERIZATION"][i]
                ours = grads["DOUBLY_REPARAMETERIZED"][i]
                theirs = grads["tfp.vi"][i]
                ref_sd = reference.std(ddof=1)
                rows.append(
                    dict(
                        discrepancy=d_name,
                        K=k,
                        variable=var,
                        reference_mean=float(reference.mean()),
                        reference_se=float(ref_sd / np.sqrt(num_draws)),
                        ours_mean=float(ours.mean()),
                        tfp_mean=float(theirs.mean()),
                        z_ours=z_score(ours - reference),
                        z_tfp=z_score(theirs - reference),
                        sd_ratio_ours=float(ours.std(ddof=1) / ref_sd)
                        if ref_sd > 0
                        else float("nan"),
                    )
                )
            mine = rows[-len(names) :]
            progress(
                f"{d_name} K={k}: largest abs z ours {max(abs(r['z_ours']) for r in mine):.1f}, "
                f"tfp.vi {max(abs(r['z_tfp']) for r in mine):.1f}"
            )
    lines = [
        "| discrepancy | K | parameter | reference mean | ours mean | tfp.vi mean "
        "| z ours | z tfp.vi | sd ours / sd reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['discrepancy']} | {r['K']} | {r['variable']} | "
            f"{fmt(r['reference_mean'], 4)} | {fmt(r['ours_mean'], 4)} | "
            f"{fmt(r['tfp_mean'], 4)} | {r['z_ours']:+.1f} | {r['z_tfp']:+.1f} | "
            f"{fmt(r['sd_ratio_ours'], 2)} |"
        )
    max_ours = max(abs(r["z_ours"]) for r in rows)
    max_tfp = max(abs(r["z_tfp"]) for r in rows)
    markdown = "\n".join(
        [
            f"{num_draws} paired draws per row; `m`, `log_s` are the surrogate's "
            "parameters, `theta` the decoder's. z: mean paired difference from "
            "the total-derivative (REPARAMETERIZATION) gradient in standard "
            "errors; |z| below about 4 is consistent with no bias (the tests use "
            f"4.5). Largest |z|: ours {max_ours:.1f}, tfp.vi {max_tfp:.1f}.",
            "",
            "\n".join(lines),
        ]
    )
    summary = [("largest abs z (bias)", f"ours {max_ours:.1f}, tfp.vi {max_tfp:.1f}")]
    data = dict(
        num_draws=num_draws,
        model=dict(
            loc=0.2,
            scale=0.6,
            theta=1.3,
            x=X_OBSERVED,
            likelihood_scale=LIKELIHOOD_SCALE,
        ),
        rows=rows,
        max_abs_z_ours=max_ours,
        max_abs_z_tfp=max_tfp,
    )
    return SectionResult(TITLE, markdown, data, summary)
