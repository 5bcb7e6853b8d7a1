"""Pareto smoothed importance sampling: is the fitted surrogate good enough to use?

Draws `z_s ~ q` from the surrogate, `s = 1..S`, carry the importance ratios
`r_s = p(z_s) / q(z_s)` against the (unnormalized) target. Pareto smoothed
importance sampling (PSIS) fits a generalized Pareto distribution to the
largest ratios and replaces them by the fit's expected order statistics. The
fitted shape `k-hat` says how heavy the right tail of the ratios is, which is
how far the surrogate is from the target in the direction that matters for
importance sampling (`q` too narrow where `p` has mass):

```none
k-hat < 0.5                : good; the ratios have finite variance and the
                             importance-sampling estimates converge at the
                             usual rate. For VI: the surrogate is close.
0.5 <= k-hat < 0.7         : usable; finite mean, slower convergence; the
                             PSIS-corrected estimates are still reliable.
k-hat > 0.7                : not reliable; the surrogate misses mass of the
                             target and no practical S repairs it.
k-hat > 1 - 1 / log10(S)   : not reliable at this S (the sample-size
                             dependent threshold of [2]; it is below 0.7 for
                             S < 2155, e.g. 0.5 at S = 100).
```

so the threshold used for the verdict is `min(1 - 1/log10(S), 0.7)`
(`khat_threshold`). With `k-hat` below it, self-normalized PSIS estimates of
posterior expectations (`psis_expectation`) and resampled draws
(`importance_resample`) correct the surrogate towards the target.

#### References

[1] Yuling Yao, Aki Vehtari, Daniel Simpson and Andrew Gelman. Yes, but did
    it work?: Evaluating variational inference. ICML 2018.
    arXiv:1802.02538.
[2] Aki Vehtari, Daniel Simpson, Andrew Gelman, Yuling Yao and Jonah Gabry.
    Pareto smoothed importance sampling. Journal of Machine Learning Research,
    25(72):1-58, 2024. arXiv:1507.02646.
[3] Jin Zhang and Michael A. Stephens. A new and efficient estimation method
    for the generalized Pareto distribution. Technometrics, 51(3):316-325,
    2009.
[4] Donald B. Rubin. Using the SIR algorithm to simulate posterior
    distributions. Bayesian Statistics 3, 1988.
"""

import math
import numbers
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import targets
from tfp_vi_estimators._internal import checks

__all__ = [
    "ImportanceResampled",
    "PSISDraws",
    "PSISWarning",
    "check_num_draws",
    "importance_resample",
    "khat_message",
    "khat_report",
    "khat_rows",
    "khat_threshold",
    "khat_verdict",
    "psis_diagnostic",
    "psis_draws",
    "psis_expectation",
    "psis_smooth",
]

DEFAULT_NUM_DRAWS = 4000

# Zhang and Stephens' grid and the weakly informative prior of [2] (App. C),
# as in ArviZ and the loo R package: `prior_bs` scales the grid around the
# first quartile, `prior_k` pseudo-observations pull k-hat towards 0.5.
_PRIOR_BS = 3.0
_PRIOR_K = 10.0
_MIN_GRID_POINTS = 30
_MIN_TAIL_LENGTH = 5
# ArviZ's thresholds are float64 constants whatever the data's dtype.
_FLOAT64_EPS = float(np.finfo(np.float64).eps)


class PSISWarning(UserWarning):
    """k-hat above the reliability threshold: the surrogate is not reliable."""


class PSISDraws(typing.NamedTuple):
    """Draws of the surrogate with their Pareto smoothed importance weights.

    Attributes:
      samples: the surrogate's samples, its structure, shaped
        `[num_draws] + batch_shape + event_shape`.
      log_weights: smoothed, self-normalized log importance weights shaped
        `[num_draws] + batch_shape` (`logsumexp` over draws is 0).
      pareto_k: k-hat, shaped `batch_shape`.
    """

    samples: Any
    log_weights: tf.Tensor
    pareto_k: tf.Tensor


# No Python control flow on tensors: autograph's conversion would only cost
# seconds on the first trace.
@tf.autograph.experimental.do_not_convert
def psis_smooth(log_weights, axis: int = 0, name: str | None = None):
    """Pareto smoothed log importance weights and the Pareto shape k-hat.

    With `S` weights along `axis`, shifted so that the largest log-weight is 0,
    the `M = ceil(min(0.2 S, 3 sqrt(S)))` largest are the tail ([2], with
    relative efficiency 1: independent draws). Their exceedances over the
    cutoff `u` (the `(M+1)`-th largest) are fitted by a generalized Pareto
    distribution with Zhang and Stephens' empirical Bayes estimator [3] and
    the weakly informative prior on the shape of [2]:

    ```none
    x_(1) <= .. <= x_(n)    = exp(lw_tail) - exp(u),  n tail values above u
    m = 30 + floor(sqrt(n));  j = 1..m
    b_j  = 1/x_(n) + (1 - sqrt(m / (j - 1/2))) / (3 x_(floor(n/4 + 1/2)))
    k(b) = mean_i log(1 - b x_(i))
    l_j  = n (log(-b_j / k(b_j)) - k(b_j) - 1)       (profile log-likelihood)
    b    = sum_j b_j softmax(l)_j                    (posterior mean)
    sigma = -k(b) / b;  k-hat = (n k(b) + 10 * 0.5) / (n + 10)
    lw_tail_(i) <- min(log(F^-1((i - 1/2) / n; k-hat, sigma) + exp(u)), 0)
    ```

    with `F^-1` the generalized Pareto quantile function. The smoothed weights
    are then self-normalized. This is ArviZ's `psislw` (and the loo R
    package's `psis`) computed in TensorFlow for any batch shape, with no loop
    over draws, in eager mode, in `tf.function` and under XLA. As there,
    k-hat is `inf` (and nothing is smoothed) when fewer than 5 values lie
    strictly above the cutoff. One deviation: log-weights that are all equal
    (a surrogate equal to the target up to a constant) give k-hat `-inf`, the
    limit of a bounded tail, where ArviZ gives `inf`. Half-precision
    log-weights are smoothed in float32 and returned in their own dtype.

    A log-weight of `-inf` is a zero weight; NaN, `+inf` and a batch member
    whose log-weights are all `-inf` have no weights to smooth. Values known
    when the call is made (NumPy arrays, eager tensors, constants) are checked
    and raise `ValueError`; values computed inside a `tf.function` or under
    XLA are known only when it runs, so there such a batch member gets k-hat
    NaN and NaN smoothed log-weights (no assert op: XLA drops them, and they
    would wait on the device). `khat_verdict` reads k-hat NaN as `'bad'`.

    Args:
      log_weights: floating-point `Tensor` of log importance ratios
        `log p(z) - log q(z)`, with a statically known size `S >= 2` along
        `axis`; every other dimension is a batch dimension.
      axis: Python integer, the axis of the draws. Default value: `0`.
      name: name scope of the ops. Default value: `None` (`'psis_smooth'`).

    Returns:
      smoothed_log_weights: `Tensor` shaped like `log_weights`, the smoothed
        log weights normalized so that their `logsumexp` along `axis` is 0.
      pareto_k: `Tensor` of k-hat, the shape of `log_weights` without `axis`.
      Neither is differentiable (the weights are a diagnostic).

    Raises:
      TypeError: if `log_weights` is not a floating-point tensor (or
        convertible to one), `axis` is not an integer or `name` not a string.
      ValueError: if `axis` is out of range or the size along it is unknown
        or below 2; if statically known log-weights hold NaN or `+inf`, or a
        batch member's are all `-inf`.
    """
    checks.check_name(name)
    log_weights, axis = _check_log_weights(log_weights, axis)
    _check_log_weight_values("log_weights", log_weights, axis)
    with tf.name_scope(name or "psis_smooth"):
        dtype = log_weights.dtype
        moved = tf.stop_gradient(_move_axis(log_weights, axis, -1))
        num_draws = moved.shape[-1]
        flat = tf.reshape(moved, [-1, num_draws])
        if dtype.size < 4:  # float16, bfloat16: the Pareto fit needs float32
            flat = tf.cast(flat, tf.float32)
        smoothed, pareto_k = _smooth_rows(flat, num_draws)
        smoothed, pareto_k = _flag_invalid_rows(flat, smoothed, pareto_k)
        smoothed = tf.cast(tf.reshape(smoothed, tf.shape(moved)), dtype)
        pareto_k = tf.cast(pareto_k, dtype)
        return _move_axis(smoothed, -1, axis), tf.reshape(
            pareto_k, tf.shape(moved)[:-1]
        )


def _check_log_weights(log_weights, axis):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"`axis` must be a Python integer; got {axis!r}.")
    try:
        log_weights = tf.convert_to_tensor(log_weights)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "`log_weights` must be a floating-point tensor or array; got "
            f"{log_weights!r} of type {type(log_weights).__name__}."
        ) from error
    if not log_weights.dtype.is_floating:
        raise TypeError(
            "`log_weights` must be a floating-point tensor; got "
            f"{log_weights.dtype.name}."
        )
    rank = log_weights.shape.rank
    if not rank or not -rank <= axis < rank:
        raise ValueError(
            f"`axis` must index a dimension of `log_weights` (shape "
            f"{log_weights.shape}); got {axis}."
        )
    axis = int(axis) % rank
    size = log_weights.shape[axis]
    if size is None or size < 2:
        raise ValueError(
            "`log_weights` must have a statically known size of at least 2 along "
            f"`axis`={axis}; got shape {log_weights.shape}."
        )
    return log_weights, axis


def _invalid_log_weights(values, axis):
    """What makes concrete log-weights unusable, in words, or `None`."""
    values = np.asarray(values, np.float64)
    problems = []
    for count, what in (
        (np.isnan(values).sum(), "NaN"),
        (np.isposinf(values).sum(), "+inf"),
        (np.all(np.isneginf(values), axis=axis).sum(), "batch members all -inf"),
    ):
        if count:
            problems.append(f"{count} {what}")
    return ", ".join(problems) or None


def _check_log_weight_values(name, log_weights, axis):
    """Raises for statically known log-weights that have no weights to smooth.

    Reads nothing that is not already known: inside a traced function a
    computed tensor has no static value and `_flag_invalid_rows` marks it.
    """
    values = tf.get_static_value(log_weights)
    problems = None if values is None else _invalid_log_weights(values, axis)
    if problems:
        raise ValueError(
            f"`{name}` must be finite or -inf (a zero weight), with a value "
            f"above -inf in every batch member along `axis`; got {problems} "
            f"(shape {log_weights.shape})."
        )


def _flag_invalid_rows(log_weights, smoothed, pareto_k):
    """NaN smoothed weights and k-hat for rows with NaN, +inf or only -inf."""
    invalid = tf.reduce_any(
        tf.math.is_nan(log_weights) | tf.equal(log_weights, np.inf), axis=-1
    ) | tf.reduce_all(tf.equal(log_weights, -np.inf), axis=-1)
    nan = tf.constant(np.nan, smoothed.dtype)
    return (
        tf.where(invalid[:, tf.newaxis], nan, smoothed),
        tf.where(invalid, nan, pareto_k),
    )


def _move_axis(x, source, destination):
    rank = x.shape.rank
    perm = list(range(rank))
    perm.insert(destination % rank, perm.pop(source % rank))
    return tf.transpose(x, perm)


def _tail_length(num_draws):
    """`M = ceil(min(0.2 S, 3 sqrt(S)))`, the number of weights PSIS smooths."""
    return int(math.ceil(min(num_draws / 5.0, 3.0 * math.sqrt(num_draws))))


def _smooth_rows(log_weights, num_draws):
    """PSIS of each row of a `[B, S]` tensor: `([B, S] smoothed, [B] k-hat)`."""
    dtype = log_weights.dtype
    tail = _tail_length(num_draws)
    shifted = log_weights - tf.reduce_max(log_weights, axis=-1, keepdims=True)
    order = tf.argsort(shifted, axis=-1, stable=True)
    ascending = tf.gather(shifted, order, batch_dims=1)
    cutoff = tf.maximum(
        ascending[:, num_draws - tail - 1],
        tf.cast(np.log(np.finfo(dtype.as_numpy_dtype).tiny), dtype),
    )
    tail_values = ascending[:, num_draws - tail :]
    in_tail = tail_values > cutoff[:, tf.newaxis]
    tail_size = tf.reduce_sum(tf.cast(in_tail, tf.int32), axis=-1)
    exceedances = tf.where(
        in_tail, tf.exp(tail_values) - tf.exp(cutoff)[:, tf.newaxis], 0.0
    )
    pareto_k, sigma = _fit_generalized_pareto(exceedances, tail_size)
    enough = tail_size >= _MIN_TAIL_LENGTH
    pareto_k = tf.where(enough, pareto_k, tf.constant(np.inf, dtype))
    smooth = enough & tf.math.is_finite(pareto_k) & (sigma > 0.0)
    smoothed_tail = tf.math.log(
        _expected_order_statistics(pareto_k, sigma, tail_size, tail)
        + tf.exp(cutoff)[:, tf.newaxis]
    )
    smoothed_tail = tf.where(
        in_tail & smooth[:, tf.newaxis],
        tf.minimum(smoothed_tail, 0.0),  # no smoothed weight above the largest raw
        tail_values,
    )
    ascending = tf.concat([ascending[:, : num_draws - tail], smoothed_tail], axis=-1)
    smoothed = tf.gather(ascending, tf.argsort(order, axis=-1), batch_dims=1)
    smoothed -= tf.reduce_logsumexp(smoothed, axis=-1, keepdims=True)
    constant = tf.equal(ascending[:, 0], 0.0)  # min == max: equal weights
    pareto_k = tf.where(constant, tf.constant(-np.inf, dtype), pareto_k)
    return smoothed, pareto_k


def _fit_generalized_pareto(exceedances, tail_size):
    """Zhang-Stephens estimate of `(k, sigma)` with the weakly informative prior.

    `exceedances` is `[B, M]`, ascending, with the `tail_size` values of each
    row last and zeros before them (zeros add nothing to `sum log1p(-b x)`).
    """
    dtype = exceedances.dtype
    max_tail = exceedances.shape[-1]
    n = tf.cast(tail_size, dtype)[:, tf.newaxis]  # [B, 1]
    num_grid = tf.floor(tf.sqrt(n)) + _MIN_GRID_POINTS
    j = tf.range(1, _MIN_GRID_POINTS + int(math.sqrt(max_tail)) + 1, dtype=dtype)
    quartile_index = tf.clip_by_value(
        max_tail - tail_size + tf.cast(tf.floor(n[:, 0] / 4.0 + 0.5), tf.int32) - 1,
        0,
        max_tail - 1,
    )
    quartile = tf.gather(exceedances, quartile_index[:, tf.newaxis], batch_dims=1)
    grid = (1.0 - tf.sqrt(num_grid / (j - 0.5))) / (
        _PRIOR_BS * quartile
    ) + 1.0 / exceedances[:, -1:]  # [B, G]
    profile_k = _mean_log1p(grid, exceedances, n)
    profile_log_likelihood = n * (tf.math.log(-grid / profile_k) - profile_k - 1.0)
    on_grid = j <= num_grid
    grid_weights = tf.nn.softmax(
        tf.where(on_grid, profile_log_likelihood, tf.constant(-np.inf, dtype)),
        axis=-1,
    )
    grid_weights = tf.where(grid_weights >= 10.0 * _FLOAT64_EPS, grid_weights, 0.0)
    grid_weights /= tf.reduce_sum(grid_weights, axis=-1, keepdims=True)
    b = tf.reduce_sum(grid * grid_weights, axis=-1, keepdims=True)  # [B, 1]
    k = _mean_log1p(b, exceedances, n)
    sigma = -k / b
    k = (n * k + _PRIOR_K * 0.5) / (n + _PRIOR_K)
    return k[:, 0], sigma[:, 0]


def _mean_log1p(b, exceedances, n):
    """`k(b) = 1/n sum_i log(1 - b x_i)`, `b` shaped `[B, G]` -> `[B, G]`."""
    terms = tf.math.log1p(-b[:, :, tf.newaxis] * exceedances[:, tf.newaxis, :])
    return tf.reduce_sum(terms, axis=-1) / n


def _expected_order_statistics(pareto_k, sigma, tail_size, max_tail):
    """`F^-1((i - 1/2) / n)` at the tail's positions (ranks below 0 are unused)."""
    dtype = sigma.dtype
    n = tf.cast(tail_size, dtype)[:, tf.newaxis]
    rank = tf.range(max_tail, dtype=dtype) - (max_tail - n)  # [B, M]
    probability = tf.clip_by_value((rank + 0.5) / n, 0.0, 1.0 - _FLOAT64_EPS)
    k = pareto_k[:, tf.newaxis]
    near_zero = tf.abs(k) < _FLOAT64_EPS
    safe_k = tf.where(near_zero | ~tf.math.is_finite(k), tf.ones_like(k), k)
    exponential = -tf.math.log1p(-probability)
    pareto = tf.math.expm1(-safe_k * tf.math.log1p(-probability)) / safe_k
    return sigma[:, tf.newaxis] * tf.where(near_zero, exponential, pareto)


def khat_threshold(num_draws: int) -> float:
    """The reliability threshold of k-hat for `S` draws: `min(1 - 1/log10 S, 0.7)`.

    Above `1 - 1/log10(S)` the importance-sampling estimate with `S` draws is
    not reliable [2, Sec. 3]; above 0.7 it is not for any practical `S`.
    """
    num_draws = check_num_draws(num_draws)
    return min(1.0 - 1.0 / math.log10(num_draws), 0.7)


def khat_verdict(pareto_k: float, num_draws: int) -> str:
    """`'good'` (k < 0.5), `'ok'` (up to `khat_threshold`) or `'bad'` [1, 2]."""
    if not isinstance(pareto_k, numbers.Real):
        raise TypeError(f"`pareto_k` must be a real number; got {pareto_k!r}.")
    if pareto_k > khat_threshold(num_draws) or math.isnan(pareto_k):
        return "bad"
    return "good" if pareto_k < 0.5 else "ok"


def psis_draws(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: Any = None,
    name: str | None = None,
) -> PSISDraws:
    """Draws of the surrogate with Pareto smoothed importance weights [1, 2].

    ```none
    z_s ~ q,  s = 1..S;  lw_s = log p(z_s) - log q(z_s)
    (lw~, k-hat) = psis_smooth(lw)
    ```

    The target is called as `monte_carlo_variational_loss` calls it (the
    structure rule and `seed` convention of `tfp.vi`, see
    `tfp_vi_estimators.targets.call_target`), so any target and surrogate
    that work with the loss work here, `JointDistribution`s with structured
    samples included. The seed is split as the loss splits it: one for
    sampling, one for the target.

    Args:
      target_log_prob_fn: the unnormalized target log-density, as for
        `monte_carlo_variational_loss`, called with `num_draws` samples.
      surrogate_posterior: the (fitted) surrogate, a
        `tfp.distributions.Distribution` or an object that behaves as one.
      num_draws: Python integer `S >= 2`, the number of draws. Default value:
        `4000` (the sample-size threshold `1 - 1/log10 S` is then above 0.7).
      seed: PRNG seed; see `tfp.random.sanitize_seed`.
      name: name scope of the ops. Default value: `None` (`'psis_draws'`).

    Returns:
      A `PSISDraws`: the samples `[S] + batch_shape + event_shape`, their
      smoothed self-normalized log weights `[S] + batch_shape` and k-hat
      `batch_shape`.

    Raises:
      TypeError, ValueError: for a bad argument, naming it, before any draw;
        `ValueError` for a target whose output is not one log-density per
        sample, and, when the draws are computed eagerly, for a target that
        is NaN or `+inf` at a draw (or `-inf` at all draws of a batch member)
        or a surrogate whose log-density at its own draws is not finite.
        Inside a `tf.function` those batch members get k-hat NaN instead
        (see `psis_smooth`).
    """
    _check_draw_arguments(
        target_log_prob_fn, surrogate_posterior, num_draws, seed, name
    )
    with tf.name_scope(name or "psis_draws"):
        samples, target_log_prob, surrogate_log_prob = _draw(
            target_log_prob_fn, surrogate_posterior, num_draws, seed
        )
        problem = _draw_values_problem(target_log_prob, surrogate_log_prob)
        if problem:
            raise ValueError(problem)
        log_weights, pareto_k = psis_smooth(target_log_prob - surrogate_log_prob)
        return PSISDraws(samples, log_weights, pareto_k)


def _draw(target_log_prob_fn, surrogate_posterior, num_draws, seed):
    """`(samples, target log-density, surrogate log-density)` of `S` draws."""
    sample_seed, target_seed = tfp.random.split_seed(seed, 2)
    samples, surrogate_log_prob = surrogate_posterior.experimental_sample_and_log_prob(
        num_draws, seed=sample_seed
    )
    target_log_prob = targets.check_target_output(
        targets.call_target(target_log_prob_fn, samples, target_seed),
        tf.TensorSpec(surrogate_log_prob.shape, surrogate_log_prob.dtype),
    )
    return samples, target_log_prob, surrogate_log_prob


def _check_draw_arguments(
    target_log_prob_fn, surrogate_posterior, num_draws, seed, name=None
):
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    check_num_draws(num_draws)
    checks.check_seed(seed)
    checks.check_name(name)


def _draw_values_problem(target_log_prob, surrogate_log_prob):
    """Eagerly: why the draws' log-densities make no importance weights, or None.

    Computed tensors have values only eagerly; in a traced function
    `psis_smooth` flags the batch members instead (k-hat NaN).
    """
    target = tf.get_static_value(target_log_prob)
    surrogate = tf.get_static_value(surrogate_log_prob)
    if target is None or surrogate is None:
        return None
    target, surrogate = np.broadcast_arrays(target, surrogate)
    bad = ~np.isfinite(surrogate)
    if bad.any():
        return (
            "`surrogate_posterior`'s log-density at its own draws must be finite; "
            f"it is NaN or infinite at {bad.sum()} of its {bad.size} values (draws x "
            "batch members; NaN or degenerate parameters?)."
        )
    bad = np.isnan(target) | np.isposinf(target)
    if bad.any():
        return (
            "`target_log_prob_fn` must return finite values (or -inf outside the "
            f"target's support) at the surrogate's draws; it returned NaN or +inf "
            f"at {bad.sum()} of its {bad.size} values (draws x batch members)."
        )
    empty = np.all(np.isneginf(target), axis=0)
    if empty.any():
        return (
            "`target_log_prob_fn` is -inf at every draw of "
            f"{empty.sum()} batch member(s): the surrogate puts no mass where "
            "the target has any."
        )
    return None


def check_num_draws(num_draws: Any, name: str = "num_draws") -> int:
    """`num_draws` as a Python `int` >= 2, or an error naming `name`.

    For callers that take a number of PSIS draws (a fit's end-of-fit report)
    and must refuse a bad one before they start.
    """
    if isinstance(num_draws, (bool, np.bool_)) or not isinstance(
        num_draws, numbers.Integral
    ):
        raise TypeError(
            f"`{name}` must be a Python integer (PSIS needs the number of draws "
            f"when the graph is built); got {num_draws!r}."
        )
    return checks.check_positive_integer(name, num_draws, minimum=2)


def psis_diagnostic(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: Any = None,
    name: str | None = None,
) -> tf.Tensor:
    """k-hat of the surrogate against the target: can the fit be trusted? [1, 2].

    The Pareto shape fitted to the tail of the importance ratios
    `p(z) / q(z)`, `z ~ q` (see `psis_draws` for how the target is called).
    Read it against the thresholds of [1, 2] (`khat_verdict`):

    ```none
    k-hat < 0.5         good: the surrogate is close to the target
    0.5 <= k-hat <= t   usable: PSIS-corrected estimates are reliable
    k-hat > t           not reliable,  t = min(1 - 1/log10(S), 0.7)
    ```

    Args:
      target_log_prob_fn: the unnormalized target log-density, as for
        `monte_carlo_variational_loss`.
      surrogate_posterior: the (fitted) surrogate.
      num_draws: Python integer `S >= 2`. Default value: `4000`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.
      name: name scope of the ops. Default value: `None`
        (`'psis_diagnostic'`).

    Returns:
      pareto_k: `Tensor` shaped like the surrogate's batch shape.

    Raises:
      TypeError, ValueError: as `psis_draws`.
    """
    _check_draw_arguments(
        target_log_prob_fn, surrogate_posterior, num_draws, seed, name
    )
    with tf.name_scope(name or "psis_diagnostic"):
        return psis_draws(
            target_log_prob_fn, surrogate_posterior, num_draws, seed
        ).pareto_k


def psis_expectation(fn: Callable, draws: PSISDraws, name: str | None = None):
    """Self-normalized PSIS estimate of `E_p[fn(z)]` and its Monte Carlo error.

    With the smoothed, normalized weights `w_s` of `draws` (independent draws,
    relative efficiency 1, [2, Sec. 3]):

    ```none
    E     = sum_s w_s fn(z_s)
    MCSE  = sqrt(sum_s w_s^2 (fn(z_s) - E)^2)
    ```

    The MCSE is trustworthy only when k-hat is below `khat_threshold(S)` [2].

    Args:
      fn: Python callable taking the samples as one argument (the
        surrogate's sample structure, `[S] + batch_shape + event_shape`) and
        returning a `Tensor` shaped `[S] + batch_shape + any_shape`.
      draws: a `PSISDraws` from `psis_draws`.
      name: name scope of the ops. Default value: `None`
        (`'psis_expectation'`).

    Returns:
      value: `Tensor` `batch_shape + any_shape`, the estimate `E`.
      mcse: `Tensor` like `value`, its Monte Carlo standard error.

    Raises:
      TypeError: if `fn` is not callable or returns no numeric tensor,
        `draws` is not a `PSISDraws` with floating-point `log_weights`, or
        `name` is not a string.
      ValueError: if `fn`'s output does not start with `[S] + batch_shape`,
        the samples of `draws` do not start with its log-weights' shape, or,
        for values known when the call is made (eagerly), the log-weights
        hold NaN or `+inf` (a traced `psis_draws` marks bad batch members so)
        or `fn` returns NaN or infinite values. Inside a `tf.function` such
        values make `value` and `mcse` NaN.
    """
    checks.check_callable("fn", fn)
    _check_draws(draws)
    checks.check_name(name)
    with tf.name_scope(name or "psis_expectation"):
        weights = tf.exp(draws.log_weights)
        values = _values_of(fn, draws.samples, weights)
        extra = values.shape.rank - weights.shape.rank
        weights = tf.reshape(weights, tf.concat([tf.shape(weights), [1] * extra], 0))
        value = tf.reduce_sum(weights * values, axis=0)
        mcse = tf.sqrt(tf.reduce_sum(tf.square(weights * (values - value)), axis=0))
        return value, mcse


def _check_draws(draws):
    if not isinstance(draws, PSISDraws):
        raise TypeError(
            f"`draws` must be a PSISDraws (from `psis_draws`); got {type(draws).__name__}."
        )
    log_weights = draws.log_weights
    dtype = getattr(log_weights, "dtype", None)
    if dtype is None or not tf.as_dtype(dtype).is_floating:
        raise TypeError(
            "`draws.log_weights` must be a floating-point tensor; got "
            f"{type(log_weights).__name__} of dtype {getattr(dtype, 'name', dtype)}."
        )
    shape = tf.TensorShape(log_weights.shape)
    if not shape.rank:
        raise ValueError("`draws.log_weights` must have a draws axis; got a scalar.")
    for part in tf.nest.flatten(draws.samples):
        part_shape = tf.TensorShape(getattr(part, "shape", None))
        if not part_shape[: shape.rank].is_compatible_with(shape):
            raise ValueError(
                "`draws.samples` must be shaped [num_draws] + batch_shape + "
                f"event_shape, starting with the log-weights' {shape}; got a "
                f"part shaped {part_shape}."
            )
    _check_log_weight_values("draws.log_weights", log_weights, 0)


def _values_of(fn, samples, weights):
    """`fn(samples)` as a `weights.dtype` tensor `[S] + batch_shape + any_shape`."""
    values = fn(samples)
    try:
        values = tf.convert_to_tensor(values)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`fn` must return a numeric tensor; got {type(values).__name__}."
        ) from error
    if not (
        values.dtype.is_floating or values.dtype.is_integer or values.dtype.is_bool
    ):
        raise TypeError(f"`fn` must return a real tensor; got {values.dtype.name}.")
    values = tf.cast(values, weights.dtype)
    if not values.shape[: weights.shape.rank].is_compatible_with(weights.shape):
        raise ValueError(
            "`fn` must return values shaped [num_draws] + batch_shape + "
            f"any_shape, starting with {weights.shape}; got {values.shape}."
        )
    static = tf.get_static_value(values)
    if static is not None and not np.all(np.isfinite(static)):
        raise ValueError(
            "`fn` must return finite values at the draws; it returned "
            f"{np.sum(~np.isfinite(static))} NaN or infinite values."
        )
    return values


class ImportanceResampled(typing.NamedTuple):
    """Samples resampled by PSIS weights, and the k-hat that qualifies them."""

    samples: Any
    pareto_k: tf.Tensor


def importance_resample(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    num_samples: int,
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: Any = None,
    name: str | None = None,
) -> ImportanceResampled:
    """Approximate posterior draws: surrogate draws resampled by PSIS weights.

    Sampling importance resampling [4] with Pareto smoothed weights [2], as
    Yao et al. [1] suggest to correct a surrogate whose k-hat is below 0.7:

    ```none
    (z_s, w_s, k-hat) = psis_draws(p, q, S)
    i_n ~ Categorical(w_1..w_S),  n = 1..N   (with replacement)
    return z_{i_1}..z_{i_N}
    ```

    The resampled draws carry duplicates; for expectations prefer
    `psis_expectation` on the weighted draws (lower variance, and an MCSE).

    Args:
      target_log_prob_fn: the unnormalized target log-density, as for
        `monte_carlo_variational_loss`.
      surrogate_posterior: the (fitted) surrogate.
      num_samples: positive integer `N`, the number of resampled draws.
      num_draws: Python integer `S >= 2`, surrogate draws to resample from.
        Default value: `4000`.
      seed: PRNG seed, split into one for `psis_draws` and one for resampling.
      name: name scope of the ops. Default value: `None`
        (`'importance_resample'`).

    Returns:
      An `ImportanceResampled`: `samples` in the surrogate's structure,
      `[N] + batch_shape + event_shape` (each batch member resampled by its
      own weights), and `pareto_k` `batch_shape`.

    Raises:
      TypeError, ValueError: as `psis_draws`, and for `num_samples`. Inside a
        `tf.function`, a batch member whose weights `psis_smooth` marks as
        unusable (k-hat NaN) is resampled uniformly and its floating-point
        samples are NaN.
    """
    _check_draw_arguments(
        target_log_prob_fn, surrogate_posterior, num_draws, seed, name
    )
    num_samples = checks.check_positive_integer("num_samples", num_samples)
    with tf.name_scope(name or "importance_resample"):
        draw_seed, resample_seed = tfp.random.split_seed(seed, 2)
        draws = psis_draws(
            target_log_prob_fn, surrogate_posterior, num_draws, draw_seed
        )
        log_weights = draws.log_weights
        batch_rank = log_weights.shape.rank - 1
        invalid = tf.math.is_nan(log_weights[0])  # batch_shape; see psis_smooth
        logits = tf.reshape(_move_axis(log_weights, 0, -1), [-1, num_draws])
        logits = tf.where(tf.math.is_nan(logits), tf.zeros_like(logits), logits)
        indices = tf.random.stateless_categorical(
            logits, num_samples, seed=resample_seed
        )  # [B, N]
        indices = tf.reshape(
            indices, tf.concat([tf.shape(log_weights)[1:], [num_samples]], 0)
        )
        samples = tf.nest.map_structure(
            lambda part: _nan_where(
                invalid, _gather_draws(part, indices, batch_rank), batch_rank
            ),
            draws.samples,
        )
        return ImportanceResampled(samples, draws.pareto_k)


def _nan_where(invalid, part, batch_rank):
    """`part` `[N] + batch + event` with NaN for the `invalid` batch members."""
    if not part.dtype.is_floating:
        return part
    event_rank = part.shape.rank - 1 - batch_rank
    mask = tf.reshape(
        invalid, tf.concat([tf.shape(invalid), tf.ones([event_rank], tf.int32)], 0)
    )
    return tf.where(mask, tf.constant(np.nan, part.dtype), part)


def _gather_draws(part, indices, batch_rank):
    """`part[indices[b, n], b]` for `part` `[S] + batch + event`, as `[N] + batch + event`."""
    if batch_rank == 0:
        return tf.gather(part, indices, axis=0)
    batch_first = _move_axis(part, 0, batch_rank)  # batch + [S] + event
    gathered = tf.gather(batch_first, indices, axis=batch_rank, batch_dims=batch_rank)
    return _move_axis(gathered, batch_rank, 0)


def khat_report(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: Any = None,
) -> tuple[float, str]:
    """k-hat of a fitted surrogate and a one-line verdict; warns when unreliable.

    For the end of a fit (`fit_surrogate_posterior`, the Keras models): runs
    `psis_diagnostic` and reads the largest k-hat over the batch against the
    thresholds of [1, 2] (`khat_verdict`). Above `khat_threshold(num_draws)`
    it issues a `PSISWarning` with the message.

    Args:
      target_log_prob_fn: the unnormalized target log-density, as for
        `monte_carlo_variational_loss`.
      surrogate_posterior: the fitted surrogate.
      num_draws: Python integer `S >= 2`. Default value: `4000`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.

    Returns:
      pareto_k: Python float, the largest k-hat over the batch.
      message: a sentence with k-hat, the verdict and what it means.

    Raises:
      TypeError, ValueError: as `psis_draws` for a bad argument; a target or
        surrogate that gives no usable weights (NaN or `+inf` log-ratios) is
        reported instead, k-hat NaN with the cause, and warns.
      RuntimeError: when called while a graph is traced (the report needs
        values).
    """
    _check_draw_arguments(target_log_prob_fn, surrogate_posterior, num_draws, seed)
    if not tf.executing_eagerly():
        raise RuntimeError(
            "`khat_report` reads k-hat's value and must run eagerly; inside a "
            "`tf.function` call `psis_diagnostic` instead."
        )
    # As `psis_diagnostic` (the same draws), but unusable weights are a
    # verdict here, not an error at the end of a fit.
    _, target_log_prob, surrogate_log_prob = _draw(
        target_log_prob_fn, surrogate_posterior, num_draws, seed
    )
    problem = _draw_values_problem(target_log_prob, surrogate_log_prob)
    if problem:
        pareto_k, message = math.nan, khat_message(math.nan, num_draws, problem)
    else:
        _, pareto_k = psis_smooth(target_log_prob - surrogate_log_prob)
        pareto_k = float(tf.reduce_max(pareto_k))
        message = khat_message(pareto_k, num_draws)
    if khat_verdict(pareto_k, num_draws) == "bad":
        warnings.warn(message, PSISWarning, stacklevel=2)
    return pareto_k, message


def khat_message(pareto_k: float, num_draws: int, cause: str | None = None) -> str:
    """The sentence `khat_report` gives for `pareto_k` with `num_draws` draws.

    Between `1 - 1/log10(S)` and 0.7 it gives the sample size `10^(1/(1-k))`
    that k-hat needs [2, Sec. 3]. For k-hat NaN (no usable weights), `cause`
    says why, if known.
    """
    verdict = khat_verdict(pareto_k, num_draws)
    head = f"PSIS k-hat = {pareto_k:.2f} with {num_draws} draws: "
    if math.isnan(pareto_k):
        return head + (
            "no importance weights to smooth (NaN or +inf log-ratios), so the "
            f"surrogate cannot be judged: {cause or 'see `psis_draws`'}"
        )
    if verdict == "good":
        return head + "good (< 0.5); the surrogate is close to the target."
    threshold = khat_threshold(num_draws)
    if verdict == "ok":
        return head + (
            f"usable (0.5 to {threshold:.2f}); PSIS-weighted estimates "
            "(`psis_expectation`, `importance_resample`) are reliable, the "
            "surrogate alone may be biased."
        )
    if pareto_k <= 0.7:  # above 1 - 1/log10(S) only: more draws would do
        return head + (
            f"above {threshold:.2f}, not reliable with this many draws; at this "
            f"k-hat it takes 10^(1/(1-k)) = {10 ** (1 / (1 - pareto_k)):.0f}."
        )
    if pareto_k == math.inf:
        return head + (
            "fewer than 5 importance ratios stand above the tail's cutoff (too "
            "few draws, or many equal ratios): no Pareto fit is possible."
        )
    return head + (
        "above 0.7, the surrogate is not reliable: it misses mass of the target, "
        "and importance weighting cannot repair it. Fit longer, use a richer "
        "surrogate or a mass-covering objective."
    )


def khat_rows(
    target_log_prob_fn: Callable,
    surrogates: Mapping[str, Any],
    num_draws: int = DEFAULT_NUM_DRAWS,
    seed: Any = None,
) -> list[dict]:
    """k-hat of several fitted surrogates of one target, as table rows.

    For the report (format with `diagnostics.format_table`): every surrogate
    is checked before any runs, and all use the same seed (common random
    numbers).

    Args:
      target_log_prob_fn: the unnormalized target log-density.
      surrogates: non-empty mapping `{label: fitted surrogate}`, e.g. one per
        gradient estimator.
      num_draws: Python integer `S >= 2`. Default value: `4000`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.

    Returns:
      A list of dicts, one per surrogate: `surrogate` (the label),
      `pareto_k` (largest over the batch, a float), `verdict` (`'good'`,
      `'ok'` or `'bad'`).

    Raises:
      TypeError, ValueError: for a bad argument, naming it.
    """
    if not isinstance(surrogates, Mapping) or not surrogates:
        raise TypeError(
            "`surrogates` must be a non-empty mapping {label: surrogate}; got "
            f"{surrogates!r}."
        )
    for surrogate in surrogates.values():
        _check_draw_arguments(target_log_prob_fn, surrogate, num_draws, seed)
    rows = []
    for label, surrogate in surrogates.items():
        pareto_k = float(
            tf.reduce_max(
                psis_diagnostic(target_log_prob_fn, surrogate, num_draws, seed)
            )
        )
        rows.append(
            dict(
                surrogate=label,
                pareto_k=pareto_k,
                verdict=khat_verdict(pareto_k, num_draws),
            )
        )
    return rows
