"""Randomized quasi-Monte Carlo sampling for the variational loss, and its variance.

`monte_carlo_variational_loss(..., sampling='rqmc')` (or
`sampling=QuasiMonteCarlo()`) draws the surrogate's base noise from a randomly
digitally shifted Sobol' point set instead of iid normals and pushes it through
the surrogate's own reparameterization (location-scale, full-rank Gaussian,
bijector-transformed, each part of a `JointDistribution` given its parents, a
reparameterized mixture with a stratified component choice, every component
of a mixture for `MixtureStickingTheLanding`). Each draw is still distributed
as the surrogate, so the loss and its gradients stay unbiased; for smooth
targets the gradient variance falls faster than `1 / S` (Buchholz, Wenzel and
Mandt 2018). A step costs about what an iid step costs
(`benchmarks/qmc_cost.py`).

`variance_by_sample_size` measures that: the gradient variance of iid and
randomized quasi-Monte Carlo sampling across sample sizes, from repeated
independent evaluations (the report's plot and `benchmarks/qmc_variance.py`).

```none
Var_S(sampling) = sum_j Var_r[ g_j(seed_r) ],   r = 1..R independent seeds
```

#### References

[1] Alexander Buchholz, Florian Wenzel and Stephan Mandt. Quasi-Monte Carlo
    variational inference. ICML 2018. arXiv:1807.01604.
[2] Art B. Owen. Monte Carlo variance of scrambled net quadrature. SIAM J.
    Numer. Anal. 34(5), 1997.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators._internal.quasi_monte_carlo import (
    QuasiMonteCarlo,
    randomized_sobol_normal,
)
from tfp_vi_estimators.variational_loss import check_arguments, evaluate_loss

__all__ = ["QuasiMonteCarlo", "randomized_sobol_normal", "variance_by_sample_size"]

SAMPLINGS = ("iid", "rqmc")


def _gradient_draws(config, variables, num_repeats, seed, jit_compile):
    """`[num_repeats, num_parameters]`: the flattened gradient for each seed."""

    def gradient(repeat_seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(evaluate_loss(config, repeat_seed))
        grads = tape.gradient(loss, variables)
        return tf.concat(
            [
                tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
                for g, v in zip(grads, variables, strict=True)
            ],
            axis=0,
        )

    step = tf.function(gradient, jit_compile=jit_compile)
    seeds = [tf.constant([seed, r], tf.int32) for r in range(num_repeats)]
    return np.stack([step(s).numpy() for s in seeds]).astype(np.float64)


def variance_by_sample_size(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    sample_sizes: Sequence[int] = (4, 8, 16, 32, 64, 128),
    num_repeats: int = 50,
    gradient_estimator: Any = None,
    variables: Sequence[tf.Variable] | None = None,
    seed: int = 0,
    jit_compile: bool = False,
    **loss_kwargs,
) -> dict:
    """Gradient variance of iid and randomized quasi-Monte Carlo sampling, by S.

    Args:
      target_log_prob_fn: as for `monte_carlo_variational_loss`.
      surrogate_posterior: a surrogate `sampling='rqmc'` serves.
      sample_sizes: the sample sizes S (powers of two suit the Sobol' nets).
      num_repeats: R, independent seeds per sampling and S.
      gradient_estimator: as for `monte_carlo_variational_loss`.
      variables: the variables to differentiate; default: the surrogate's
        trainable variables.
      seed: Python int; repeat r of every configuration uses the stateless seed
        `(seed, r)`.
      jit_compile: compile each gradient with XLA.
      **loss_kwargs: further keywords of `monte_carlo_variational_loss`
        (`importance_sample_size`, `discrepancy_fn`, ...).

    Returns:
      `{'sample_sizes': [S...], 'iid': [variance...], 'rqmc': [variance...],
      'iid_standard_error': [...], 'rqmc_standard_error': [...],
      'num_repeats': R}`: the total variance (summed over parameters) of the
      gradient, and its standard error `sqrt(2 / (R - 1))` times the variance
      (normal approximation).

    Raises:
      ValueError: `num_repeats` below 2, or what `check_arguments` raises.
    """
    checks.check_positive_integer("num_repeats", num_repeats, minimum=2)
    for s in sample_sizes:
        checks.check_positive_integer("sample_sizes", s)
    if variables is None:
        variables = list(surrogate_posterior.trainable_variables)
    result = {"sample_sizes": list(sample_sizes), "num_repeats": num_repeats}
    for sampling in SAMPLINGS:
        variances = []
        for sample_size in sample_sizes:
            config = check_arguments(
                target_log_prob_fn,
                surrogate_posterior,
                sample_size=sample_size,
                gradient_estimator=gradient_estimator,
                sampling=sampling,
                **loss_kwargs,
            )
            draws = _gradient_draws(config, variables, num_repeats, seed, jit_compile)
            variances.append(float(np.sum(np.var(draws, axis=0, ddof=1))))
        result[sampling] = variances
        relative = np.sqrt(2.0 / (num_repeats - 1))
        result[f"{sampling}_standard_error"] = [v * relative for v in variances]
    return result
