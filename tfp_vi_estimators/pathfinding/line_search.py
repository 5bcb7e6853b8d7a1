"""A weak Wolfe line search with one objective call site, batched over paths.

Along a descent direction `d` from `x` (slope `f'(0) = g^T d < 0`), a step `t`
is accepted when

```none
f(x + t d) <= f(x) + c1 t f'(0) + r          (sufficient decrease, c1 = 1e-4)
g(x + t d)^T d >= c2 f'(0)                   (curvature, c2 = 0.9)
```

where `r = 10 eps max(|f(x)|, |f(x + t d)|)` is the rounding of `f` (an
approximate Armijo condition in the spirit of Hager and Zhang's approximate
Wolfe conditions [2]: in float32 near a mode the decrease of `f` is below its
rounding). The curvature condition gives `s^T z = t (g' - g)^T d > 0`: every
accepted step is a usable L-BFGS pair. The step is found by bracketing and
bisection (Lewis and Overton [1]): start at `t = 1` (the quasi-Newton step);
too long (no sufficient decrease, or a non-finite value) sets the upper
bracket, too short (no curvature) the lower one; the next trial is the
bracket's midpoint, or `2 t` while there is no upper bracket. Once a step is
accepted, if the secant step of the two slopes

```none
t_s = t f'(0) / (f'(0) - f'(t))         (the minimizer along the line of a quadratic)
```

is more than 0.1 % away from it, `t_s` is tried once and kept if it is
acceptable and lower. On a quadratic that makes the line searches exact
(`t_s` is the minimizer), which BFGS needs to recover the Hessian in `d`
steps. Measured on a 10-dimensional Gaussian (float64, history 10): 10
iterations and 21 evaluations recover its covariance to rounding (3e-15);
without the secant trial, 16 iterations and 17 evaluations end off by 0.33
(absolute, in covariance entries of order 1); with a 10 % threshold, 12
iterations, off by 0.30. (TFP's Hager-Zhang search: 10 iterations, 28
evaluations, exact.)

Why not TFP's Hager-Zhang line search (`tfp.optimizer.linesearch.hager_zhang`,
which an earlier version of `lbfgs.py` used): its graph calls the objective
from about nine places, and XLA compiles each copy of the target and its
gradient. Every trial here runs in one loop with one call site, so a
Pathfinder program holds four copies of the target (start, line search,
ELBO, draws) instead of twelve. Measured on the Inference Gym's
`EightSchools` (10 parameters, one path, library defaults, XLA, 2-core
shared CPU; the two versions alternating in one process, 3 rounds each,
medians, process CPU time): compilation 9.7 s here against 17.8 s with
Hager-Zhang (1.8x); a compiled run 10.7 ms against 12.3 ms, with 91
gradient evaluations against 107 (34 and 33 iterations). On
`BrownianMotionMissingMiddleObservations` (30 parameters) an earlier
single measurement of the Hager-Zhang version took 1692 s (wall time) to
compile; this version took 27 s (CPU time) in the benchmark run of
`docs/pathfinder.md` (not the same conditions: no ratio is claimed).

#### References

[1] Adrian S. Lewis and Michael L. Overton. Nonsmooth optimization via
    quasi-Newton methods. Mathematical Programming, 141:135-163, 2013.
[2] William W. Hager and Hongchao Zhang. A new conjugate gradient method with
    guaranteed descent and an efficient line search. SIAM Journal on
    Optimization, 16(1):170-192, 2005.
"""

import typing

import numpy as np
import tensorflow as tf

__all__ = ["LineSearchResult", "ROUNDING_EPS", "weak_wolfe"]

SUFFICIENT_DECREASE = 1e-4
CURVATURE = 0.9
# An accepted step more than this far (relative) from the secant step of the
# two slopes gets one more trial there (see the module docstring).
REFINE = 1e-3
# Changes of f below this many epsilons of |f| are rounding.
ROUNDING_EPS = 10.0


class LineSearchResult(typing.NamedTuple):
    """Per path `[B]`: whether a step was accepted, the step, and `f` and its
    gradient there (the start's where none was); evaluations (scalar)."""

    accepted: tf.Tensor
    step: tf.Tensor
    value: tf.Tensor
    gradient: tf.Tensor
    num_evaluations: tf.Tensor


class _Trial(typing.NamedTuple):
    iteration: tf.Tensor
    step: tf.Tensor  # the step tried next
    low: tf.Tensor
    high: tf.Tensor
    done: tf.Tensor
    refining: tf.Tensor  # accepted; now trying the secant step once
    accepted: tf.Tensor
    accepted_step: tf.Tensor
    value: tf.Tensor
    gradient: tf.Tensor


def rounding(value, other):
    """`10 eps max(|value|, |other|)`: the rounding of `f`."""
    eps = np.finfo(value.dtype.as_numpy_dtype).eps.item()
    return ROUNDING_EPS * eps * tf.maximum(tf.abs(value), tf.abs(other))


def _classify(trial, value, gradient, start_value, slope, direction):
    """`(accept, too_long, too_short)` of the trial step of each path."""
    finite = tf.math.is_finite(value) & tf.reduce_all(tf.math.is_finite(gradient), -1)
    decrease = value <= (
        start_value
        + SUFFICIENT_DECREASE * trial.step * slope
        + rounding(start_value, value)
    )
    curvature = tf.reduce_sum(gradient * direction, axis=-1) >= CURVATURE * slope
    searching = ~trial.done
    accept = searching & finite & decrease & curvature
    too_long = searching & ~(finite & decrease)
    too_short = searching & finite & decrease & ~curvature
    return accept, too_long, too_short


def _secant(step, slope, new_slope):
    """The minimizer along the line of the quadratic through the two slopes."""
    return step * slope / (slope - new_slope)


def _refine(trial, accept, value, gradient, slope, direction):
    """After an acceptance, one more trial at the secant step when it is more
    than `REFINE` away (relative); keep it if it is acceptable and lower."""
    new_slope = tf.reduce_sum(gradient * direction, axis=-1)
    secant = _secant(trial.step, slope, new_slope)
    far = tf.math.is_finite(secant) & (
        tf.abs(secant - trial.step) > REFINE * trial.step
    )
    start_refining = accept & ~trial.refining & far
    better = trial.refining & accept & (value < trial.value)
    take = (accept & ~trial.refining) | better
    return start_refining, take, secant


def _body(objective, position, direction, start_value, slope):
    def body(trial):
        value, gradient = objective(position + trial.step[:, None] * direction)
        accept, too_long, too_short = _classify(
            trial, value, gradient, start_value, slope, direction
        )
        start_refining, take, secant = _refine(
            trial, accept, value, gradient, slope, direction
        )
        searching = ~trial.refining
        high = tf.where(too_long & searching, trial.step, trial.high)
        low = tf.where(too_short & searching, trial.step, trial.low)
        next_step = tf.where(tf.math.is_inf(high), 2.0 * trial.step, 0.5 * (low + high))
        next_step = tf.where(start_refining, secant, next_step)
        done = trial.done | (accept & ~start_refining) | trial.refining
        return [
            _Trial(
                iteration=trial.iteration + 1,
                step=tf.where(done, trial.step, next_step),
                low=low,
                high=high,
                done=done,
                refining=start_refining,
                accepted=trial.accepted | (accept & searching),
                accepted_step=tf.where(take, trial.step, trial.accepted_step),
                value=tf.where(take, value, trial.value),
                gradient=tf.where(take[:, None], gradient, trial.gradient),
            )
        ]

    return body


def weak_wolfe(objective, position, value, gradient, direction, active, max_iterations):
    """Searches every active path along its `direction` (see the module doc).

    Args:
      objective: callable `[B, d] -> ([B], [B, d])`, `f` and its gradient.
      position: `[B, d]`, the start.
      value: `[B]`, `f` at the start.
      gradient: `[B, d]`, its gradient there.
      direction: `[B, d]` descent directions (`g^T d < 0` where active).
      active: `[B]` bool; the other paths are not searched.
      max_iterations: Python integer, trials at most.

    Returns:
      A `LineSearchResult`.
    """
    slope = tf.reduce_sum(gradient * direction, axis=-1)
    start = _Trial(
        iteration=tf.constant(0),
        step=tf.ones_like(value),
        low=tf.zeros_like(value),
        high=tf.fill(tf.shape(value), tf.constant(np.inf, value.dtype)),
        done=~active,
        refining=tf.zeros_like(active),
        accepted=tf.zeros_like(active),
        accepted_step=tf.zeros_like(value),
        value=value,
        gradient=gradient,
    )
    trial = tf.while_loop(
        lambda trial: (trial.iteration < max_iterations) & tf.reduce_any(~trial.done),
        _body(objective, position, direction, value, slope),
        [start],
    )[0]
    return LineSearchResult(
        accepted=trial.accepted,
        step=trial.accepted_step,
        value=trial.value,
        gradient=trial.gradient,
        num_evaluations=trial.iteration,
    )
