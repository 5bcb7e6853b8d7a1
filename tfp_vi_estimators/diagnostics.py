"""Gradient diagnostics: mean, variance and signal-to-noise ratio of any estimator.

```none
g_1..g_N = grad loss_fn(seed_n),  seed_n = split_seed(seed, N)
mean     = 1/N sum_n g_n
variance = 1/(N - 1) sum_n (g_n - mean)^2
snr      = |mean| / sqrt(variance)            (elementwise)
```

The draws stream through in chunks of `chunk_size`: each chunk is computed
with `tf.vectorized_map` (falling back to an in-graph loop only for the
operations it cannot vectorize, such as stateless random sampling from a
per-draw seed) and reduced at once to its count, mean and sum of squared
deviations, which are merged into running totals (Chan, Golub and LeVeque's
pairwise update [1], the chunked form of Welford's [2]). Peak memory is that of
one chunk, whatever `num_draws`; there is no Python loop over draws and the
functions work inside `tf.function`.

#### References

[1]: Tony F. Chan, Gene H. Golub and Randall J. LeVeque. Updating formulae
     and a pairwise algorithm for computing sample variances. Technical report
     STAN-CS-79-773, Stanford University, 1979.
     http://i.stanford.edu/pub/cstr/reports/cs/tr/79/773/CS-TR-79-773.pdf

[2]: B. P. Welford. Note on a method for calculating corrected sums of squares
     and products. _Technometrics_, 4(3):419-420, 1962.
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

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "GradientMoments",
    "RunningMoments",
    "compare_estimators",
    "format_table",
    "gradient_moments",
    "merge_moments",
    "moments_of_draws",
]

# Draws vectorized at once. Memory grows with it (a chunk holds the loss's
# intermediates of every draw in it); the per-chunk overhead of the loop is a
# few small ops, negligible from a few dozen draws on.
DEFAULT_CHUNK_SIZE = 64


class GradientMoments(typing.NamedTuple):
    """Per-variable gradient statistics (lists aligned with `variables`)."""

    mean: list
    variance: list
    snr: list


class RunningMoments(typing.NamedTuple):
    """Count, mean and sum of squared deviations of draws seen so far.

    Attributes:
      count: number of draws, a scalar of the draws' dtype.
      mean: mean over the draws (shaped like one draw).
      m2: `sum_n (x_n - mean)^2` (shaped like one draw).
    """

    count: typing.Any
    mean: typing.Any
    m2: typing.Any

    @property
    def variance(self):
        """Unbiased sample variance `m2 / (count - 1)`."""
        return self.m2 / (self.count - 1.0)


def moments_of_draws(draws, axis=0) -> RunningMoments:
    """`RunningMoments` of `draws` along `axis` (the draws of one chunk).

    Args:
      draws: `Tensor` (or array) of draws stacked along `axis`.
      axis: Python integer, the axis that indexes the draws. Default: `0`.

    Returns:
      `RunningMoments` whose `mean` and `m2` have `axis` reduced away.
    """
    draws = tf.convert_to_tensor(draws)
    count = tf.cast(tf.shape(draws)[axis], draws.dtype)
    mean = tf.reduce_mean(draws, axis=axis)
    m2 = tf.reduce_sum(tf.square(draws - tf.expand_dims(mean, axis)), axis=axis)
    return RunningMoments(count, mean, m2)


def merge_moments(a: RunningMoments, b: RunningMoments) -> RunningMoments:
    """The moments of the union of two disjoint sets of draws [1].

    ```none
    n     = n_a + n_b,   delta = mean_b - mean_a
    mean  = mean_a + delta n_b / n
    m2    = m2_a + m2_b + delta^2 n_a n_b / n
    ```

    Stable in floating point (no difference of large sums), and exact up to
    rounding: merging the chunks of a set of draws gives its direct moments.

    Args:
      a: `RunningMoments` of the first set.
      b: `RunningMoments` of the second set (same shapes and dtype as `a`).

    Returns:
      `RunningMoments` of all `n_a + n_b` draws.
    """
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / count)
    m2 = a.m2 + b.m2 + tf.square(delta) * (a.count * b.count / count)
    return RunningMoments(count, mean, m2)


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


def gradient_moments(
    loss_fn: typing.Callable,
    variables: typing.Sequence[tf.Variable],
    num_draws: int,
    seed=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    name: str | None = None,
) -> GradientMoments:
    """Mean, variance and SNR of `grad loss_fn(seed)` over independent seeds.

    ```none
    g_n = grad_variables sum(loss_fn(seed_n)),  seed_n = split_seed(seed, N)[n]
    mean = 1/N sum_n g_n,  variance = 1/(N - 1) sum_n (g_n - mean)^2
    snr = |mean| / sqrt(variance)   (0 where the variance is 0)
    ```

    The `N = num_draws` gradients are computed `chunk_size` at a time
    (vectorized within a chunk) and folded into running moments
    (`merge_moments`), so memory does not grow with `num_draws`. The per-draw
    seeds, and so the results up to float rounding, do not depend on
    `chunk_size`.

    Args:
      loss_fn: callable `loss_fn(seed) -> Tensor`; the loss is summed before
        differentiating. It must draw all its randomness from `seed` (a
        stateless seed, shape `[2]`).
      variables: non-empty list of `tf.Variable`s to differentiate.
      num_draws: integer >= 2, the number of independent seeds.
      seed: PRNG seed from which the per-draw seeds are split.
      chunk_size: positive integer, the draws computed at once. Memory grows
        with it, not with `num_draws`. Default value: `DEFAULT_CHUNK_SIZE`.
      name: name scope of the ops. Default value: `'gradient_moments'`.

    Returns:
      `GradientMoments` with lists of `Tensor`s shaped like each variable.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument.

    #### References

    [1]: Tony F. Chan, Gene H. Golub and Randall J. LeVeque. Updating formulae
         and a pairwise algorithm for computing sample variances. Stanford
         technical report STAN-CS-79-773, 1979.
    """
    checks.check_callable("loss_fn", loss_fn)
    _check_variables(variables)
    num_draws = _static_integer("num_draws", num_draws, minimum=2)
    chunk_size = _static_integer("chunk_size", chunk_size)
    checks.check_seed(seed)
    checks.check_name(name)
    variables = list(variables)

    def moments():
        with tf.name_scope(name or "gradient_moments"):
            # A Tensor `n` gives the `[n, 2]` seeds as one tensor (the same
            # values as a Python `n`, which unstacks them into n graph outputs).
            seeds = tfp.random.split_seed(seed, n=tf.constant(num_draws))
            draw_chunk = functools.partial(_gradient_chunk, loss_fn, variables)
            start = [_no_draws(v) for v in variables]
            totals = _streamed_moments(draw_chunk, seeds, num_draws, chunk_size, start)
            return _gradient_moments(totals)

    if tf.executing_eagerly():
        # One trace for all chunks (eager `vectorized_map` would trace per call).
        return tf.function(moments, autograph=False)()
    return moments()


def _static_integer(name, value, minimum=1):
    """`value` as a Python int (checked); the loop over chunks needs it static."""
    value = checks.check_positive_integer(name, value, minimum=minimum)
    static = tf.get_static_value(value)
    if static is None:
        raise TypeError(f"`{name}` must have a static value; got {value!r}.")
    return int(static)


def _gradient_chunk(loss_fn, variables, seeds):
    """Gradients `[len(seeds)] + variable.shape` of one chunk, vectorized."""

    def one_draw(draw_seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(loss_fn(draw_seed))
        return tape.gradient(
            loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )

    return tf.vectorized_map(one_draw, seeds, fallback_to_while_loop=True)


def _streamed_moments(draw_chunk, seeds, num_draws, chunk_size, start):
    """`RunningMoments` per output of `draw_chunk` over all `seeds`, by chunks.

    `draw_chunk(chunk_seeds)` returns a list of `[chunk_size, ...]` draws; it
    is traced once. `start` holds the moments of no draws of each output. The
    chunks run in a `tf.while_loop` with one iteration in flight at a time, so
    at most one chunk's intermediates are alive. The seeds are padded to whole
    chunks; the last chunk's padded draws are dropped before they are merged.
    """
    chunk_size = min(chunk_size, num_draws)
    num_chunks = -(-num_draws // chunk_size)
    padded = tf.pad(seeds, [[0, num_chunks * chunk_size - num_draws], [0, 0]])
    chunked = tf.reshape(padded, [num_chunks, chunk_size, 2])

    def body(i, totals):
        kept = tf.minimum(chunk_size, num_draws - i * chunk_size)
        chunk = [moments_of_draws(d[:kept]) for d in draw_chunk(chunked[i])]
        return i + 1, [merge_moments(t, c) for t, c in zip(totals, chunk, strict=True)]

    _, totals = tf.while_loop(
        lambda i, _: i < num_chunks,
        body,
        (tf.constant(0), start),
        parallel_iterations=1,
    )
    return totals


def _no_draws(variable):
    """`RunningMoments` of no draws of a gradient shaped like `variable`."""
    zeros = tf.zeros(variable.shape, variable.dtype)
    return RunningMoments(tf.zeros([], variable.dtype), zeros, zeros)


def _gradient_moments(totals):
    variance = [t.variance for t in totals]
    snr = [
        tf.math.divide_no_nan(tf.abs(t.mean), tf.sqrt(v))
        for t, v in zip(totals, variance, strict=True)
    ]
    return GradientMoments([t.mean for t in totals], variance, snr)


def compare_estimators(
    target_log_prob_fn: typing.Callable,
    surrogate_posterior,
    gradient_estimators: dict | typing.Sequence,
    num_draws: int = 1000,
    seed=None,
    variables: typing.Sequence[tf.Variable] | None = None,
    loss_fn: typing.Callable | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **loss_kwargs,
) -> list:
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
      chunk_size: positive integer, the gradient draws computed at once (see
        `gradient_moments`). Default value: `DEFAULT_CHUNK_SIZE`.
      **loss_kwargs: passed to the loss (`sample_size`, `discrepancy_fn`, ...).

    Returns:
      A list of dicts, one per (estimator, variable): `estimator`,
      `variable`, `mean_abs_mean`, `total_variance` (summed over elements),
      `mean_snr` (averaged over elements).
    """
    gradient_estimators = _labelled(gradient_estimators)
    _static_integer("num_draws", num_draws, minimum=2)
    _static_integer("chunk_size", chunk_size)
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
        moments = gradient_moments(loss, variables, num_draws, seed, chunk_size)
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
