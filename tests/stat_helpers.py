"""Shared helpers for the statistical tests: problems and z-score checks.

Per-draw gradients come out of one vectorized call: the surrogate and the
model parameter are batch-shaped `[num_draws]`, each batch member with its own
copy of the parameters and its own sample, so the gradient of the summed loss
with respect to member b is the gradient estimate of draw b.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from problems import (  # noqa: F401 - re-exported to the tests
    LIKELIHOOD_SCALE,
    X_OBSERVED,
    DecoderProblem,
)

tfd = tfp.distributions

# Tolerance, in standard errors, for mean-gradient comparisons. Under the null
# hypothesis each z-score is approximately standard normal; P(|Z| > 4.5) is
# about 7e-6, so even across the few hundred comparisons of the whole suite the
# chance of a false failure stays below 1e-3 (Bonferroni).
Z_TOLERANCE = 4.5


def per_draw_gradients(loss_fn, variables):
    """Gradient of `sum(loss_fn())` per variable, as numpy arrays `[num_draws]`."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loss_fn())
    return [g.numpy() for g in tape.gradient(loss, variables)]


def z_scores(samples, reference=0.0):
    """(mean(samples) - reference) / standard error, from the same draws."""
    samples = np.asarray(samples, np.float64)
    se = samples.std(ddof=1) / np.sqrt(samples.shape[0])
    error = samples.mean() - reference
    if se == 0.0:  # identical draws (e.g. two estimators agreeing exactly)
        return 0.0 if error == 0.0 else np.inf * np.sign(error)
    return error / se


def variational_loss(
    problem, estimator, importance_sample_size, discrepancy_fn=None, seed=(3, 9)
):
    """A zero-argument loss: one draw of K particles per batch member."""
    import tfp_vi_estimators as tve

    def loss():
        return tve.monte_carlo_variational_loss(
            problem.target_log_prob,
            problem.surrogate,
            sample_size=1,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=discrepancy_fn or tve.kl_reverse,
            gradient_estimator=estimator,
            seed=seed,
        )

    return loss


def two_sample_z_scores(draws, reference_draws):
    """z-scores of the difference of means of independent draws, per variable."""
    return np.array(
        [
            (a.mean() - b.mean())
            / np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
            for a, b in zip(draws, reference_draws, strict=True)
        ]
    )


def closed_form_z_scores(problem, draws):
    """z-scores of per-draw gradients against the closed-form ELBO gradient."""
    exact = per_draw_gradients(problem.negative_elbo, problem.variables)
    return np.array([z_scores(d, e[0]) for d, e in zip(draws, exact, strict=True)])
