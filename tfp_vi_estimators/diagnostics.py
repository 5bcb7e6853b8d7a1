"""Gradient diagnostics: mean, variance and signal-to-noise ratio of any estimator.

```none
g_1..g_N = grad loss_fn(seed_n),  seed_n = split_seed(seed, N)
mean     = 1/N sum_n g_n
variance = 1/(N - 1) sum_n (g_n - mean)^2
snr      = |mean| / sqrt(variance)            (elementwise)
```

The draws are computed with `tf.vectorized_map` (falling back to an in-graph
loop only for the operations it cannot vectorize, such as stateless random
sampling from a per-draw seed), so there is no Python loop over draws and the
function works inside `tf.function`.
"""

import functools
import numbers
import typing

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.loss_config import check_arguments
from tfp_vi_estimators.variational_loss import evaluate_loss

__all__ = ["GradientMoments", "compare_estimators", "format_table", "gradient_moments"]


class GradientMoments(typing.NamedTuple):
    """Per-variable gradient statistics (lists aligned with `variables`)."""

    mean: list
    variance: list
    snr: list


def _check_variables(variables):
    if isinstance(variables, (tf.Variable, tf.Module)) or not isinstance(
        variables, (list, tuple)
    ):
        raise TypeError(
            "`variables` must be a non-empty list or tuple of tf.Variable; got "
            f"{type(variables).__name__}."
        )
    if not variables or not all(isinstance(v, tf.Variable) for v in variables):
        raise TypeError(
            "`variables` must be a non-empty list or tuple of tf.Variable; got "
            f"{[type(v).__name__ for v in variables]}."
        )


def gradient_moments(loss_fn, variables, num_draws, seed=None):
    """Mean, variance and SNR of `grad loss_fn(seed)` over independent seeds.

    Args:
      loss_fn: callable `loss_fn(seed) -> Tensor`; the loss is summed before
        differentiating. It must draw all its randomness from `seed` (a
        stateless seed, shape `[2]`).
      variables: non-empty list of `tf.Variable`s to differentiate.
      num_draws: integer >= 2, the number of independent seeds.
      seed: PRNG seed from which the per-draw seeds are split.

    Returns:
      `GradientMoments` with lists of `Tensor`s shaped like each variable.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument.
    """
    checks.check_callable("loss_fn", loss_fn)
    _check_variables(variables)
    checks.check_positive_integer("num_draws", num_draws, minimum=2)
    checks.check_seed(seed)
    seeds = tf.stack(tfp.random.split_seed(seed, n=num_draws))

    def one_draw(draw_seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loss_fn(draw_seed))
        return tape.gradient(
            loss, list(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO
        )

    draws = tf.vectorized_map(one_draw, seeds, fallback_to_while_loop=True)
    mean = [tf.reduce_mean(d, axis=0) for d in draws]
    n = tf.cast(num_draws, draws[0].dtype)
    variance = [
        tf.reduce_sum(tf.square(d - m), axis=0) / (n - 1.0)
        for d, m in zip(draws, mean, strict=True)
    ]
    snr = [
        tf.math.divide_no_nan(tf.abs(m), tf.sqrt(v))
        for m, v in zip(mean, variance, strict=True)
    ]
    return GradientMoments(mean, variance, snr)


def compare_estimators(
    target_log_prob_fn,
    surrogate_posterior,
    gradient_estimators,
    num_draws=1000,
    seed=None,
    variables=None,
    loss_fn=None,
    **loss_kwargs,
):
    """Gradient moments of several estimators on one problem, as table rows.

    Args:
      target_log_prob_fn: the target, as for `monte_carlo_variational_loss`.
      surrogate_posterior: the surrogate.
      gradient_estimators: dict `{label: estimator}` (enum members or
        estimator objects), or a list (labels from their names).
      num_draws: independent seeds per estimator. Default value: `1000`.
      seed: PRNG seed; every estimator gets the same per-draw seeds.
      variables: variables to report. Default value: the surrogate's
        trainable variables.
      loss_fn: the loss to call. Default value:
        `tfp_vi_estimators.monte_carlo_variational_loss`.
      **loss_kwargs: passed to the loss (`sample_size`, `discrepancy_fn`, ...).

    Returns:
      A list of dicts, one per (estimator, variable): `estimator`,
      `variable`, `mean_abs_mean`, `total_variance` (summed over elements),
      `mean_snr` (averaged over elements).
    """
    gradient_estimators = _labelled(gradient_estimators)
    checks.check_positive_integer("num_draws", num_draws, minimum=2)
    checks.check_seed(seed)
    losses = _losses_by_label(
        target_log_prob_fn,
        surrogate_posterior,
        gradient_estimators,
        loss_fn,
        loss_kwargs,
    )
    if variables is None:
        variables = list(surrogate_posterior.trainable_variables)
    _check_variables(variables)
    variables = list(variables)
    rows = []
    for label, loss in losses.items():
        moments = tf.function(
            lambda loss=loss: gradient_moments(loss, variables, num_draws, seed)
        )()
        rows += _rows(label, variables, moments)
    return rows


def _labelled(gradient_estimators):
    if isinstance(gradient_estimators, (list, tuple)):
        gradient_estimators = {
            getattr(e, "name", repr(e)): e for e in gradient_estimators
        }
    if not isinstance(gradient_estimators, dict) or not gradient_estimators:
        raise TypeError(
            "`gradient_estimators` must be a non-empty dict {label: estimator} or "
            f"list of estimators; got {gradient_estimators!r}."
        )
    return gradient_estimators


def _losses_by_label(target, surrogate, gradient_estimators, loss_fn, loss_kwargs):
    """`{label: loss(seed)}`; every estimator is checked before any runs."""
    if loss_fn is None:
        configs = {
            label: check_arguments(
                target, surrogate, gradient_estimator=estimator, **loss_kwargs
            )
            for label, estimator in gradient_estimators.items()
        }
        return {
            label: functools.partial(evaluate_loss, config)
            for label, config in configs.items()
        }
    checks.check_callable("loss_fn", loss_fn)
    checks.check_distribution("surrogate_posterior", surrogate)

    def user_loss(estimator, seed):
        return loss_fn(
            target, surrogate, gradient_estimator=estimator, seed=seed, **loss_kwargs
        )

    return {
        label: functools.partial(user_loss, estimator)
        for label, estimator in gradient_estimators.items()
    }


def _rows(label, variables, moments):
    return [
        dict(
            estimator=label,
            variable=v.name.split(":")[0],
            mean_abs_mean=float(tf.reduce_mean(tf.abs(m))),
            total_variance=float(tf.reduce_sum(var)),
            mean_snr=float(tf.reduce_mean(snr)),
        )
        for v, m, var, snr in zip(
            variables, moments.mean, moments.variance, moments.snr, strict=True
        )
    ]


def format_table(rows, columns=None):
    """Markdown table of a list of dicts (floats in 4 significant digits)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def cell(value):
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows
    ]
    return "\n".join(lines)
