"""One L-BFGS iteration for a batch of paths.

Pathfinder needs every iterate and gradient of the optimization, so the loop
in `path.py` drives L-BFGS one iteration at a time. An iteration here:

```none
d   = -H g                            (H: L-BFGS estimate from the pair history,
                                       scalar initial estimate s^T z / z^T z)
t   = weak Wolfe line search on f(x + t d), first trial t = 1   (line_search.py)
x'  = x + t d,  g' = grad f(x')
converged: max |g'| <= gradient_tolerance, or, three iterations in a row,
           |f' - f| <= max(f_absolute_tolerance, 10 eps max(|f|, |f'|))
failed:    the line search found no step, or f or g is not finite
```

Why not `tfp.optimizer.lbfgs_minimize`: it can be resumed one iteration at a
time (`previous_optimizer_results`), but every call traces its whole loop
body again (the initial state costs one more trace), its relative tolerance
on the objective compares with `tol * f` and never fires for objectives below
zero, its line search calls the target from about nine places of the graph
(see `line_search.py` for what that costs under XLA), and the pair history and
curvature test Pathfinder needs are its own anyway.

Why an absolute tolerance on `f` (in nats), not Stan's relative one: `f` is
an unnormalized log-density, whose additive constant is arbitrary, and a
tolerance relative to `|f|` depends on it. Measured on a 20-dimensional
Gaussian in float32 started in `(-2, 2)^d` (so that `f - f*` is 0.03 nats
against `|f|` = 60): a relative `1.2e-5` stopped after 4 iterations with the
marginal sds off by a median factor of 2.2, the absolute `1.2e-5` nats
with three iterations in a row after 13, off by 5 % (20 pairs kept). The
rounding floor `10 eps |f|` keeps the test meaningful where `f` cannot
resolve smaller changes.
"""

import typing

import tensorflow as tf

from tfp_vi_estimators.pathfinding import line_search

__all__ = ["OptimizerState", "initial_state", "step"]

# Iterations in a row whose change of f must be below tolerance: one such
# change may be rounding while the step still carried curvature information.
PATIENCE = 3


class OptimizerState(typing.NamedTuple):
    """The optimizer's state for a batch `[B]` of paths.

    Attributes:
      position: `[B, d]`.
      value: `[B]`, the objective `f = -log p` at `position`.
      gradient: `[B, d]`, its gradient.
      converged: `[B]` bool, stopped by a tolerance.
      failed: `[B]` bool, stopped by a line search failure or a non-finite
        value or gradient.
      num_evaluations: int32 scalar, calls of the (batched) objective.
      small_changes: `[B]` int32, iterations in a row with a change of `f`
        below tolerance.
    """

    position: tf.Tensor
    value: tf.Tensor
    gradient: tf.Tensor
    converged: tf.Tensor
    failed: tf.Tensor
    num_evaluations: tf.Tensor
    small_changes: tf.Tensor

    @property
    def active(self):
        return ~(self.converged | self.failed)


def _finite(value, gradient):
    return tf.math.is_finite(value) & tf.reduce_all(tf.math.is_finite(gradient), -1)


def initial_state(objective, position):
    """The state at `position` (one evaluation); non-finite starts are failed."""
    value, gradient = objective(position)
    return OptimizerState(
        position=position,
        value=value,
        gradient=gradient,
        converged=tf.zeros_like(value, tf.bool),
        failed=~_finite(value, gradient),
        num_evaluations=tf.constant(1),
        small_changes=tf.zeros_like(value, tf.int32),
    )


def _converged(state, value, gradient, gradient_tolerance, f_absolute_tolerance):
    small_change = tf.abs(value - state.value) <= tf.maximum(
        tf.cast(f_absolute_tolerance, value.dtype),
        line_search.rounding(state.value, value),
    )
    count = tf.where(small_change, state.small_changes + 1, 0)
    small_gradient = tf.reduce_max(tf.abs(gradient), axis=-1) <= gradient_tolerance
    return (count >= PATIENCE) | small_gradient, count


def step(objective, state, direction, settings):
    """One iteration of every active path along `direction` (`[B, d]`).

    A direction that is not a descent direction (`g^T d >= 0`, from a poor
    history) is replaced by `-g`. Inactive paths do not move.

    Args:
      objective: callable `[B, d] -> ([B], [B, d])`, value and gradient of
        `f`.
      state: an `OptimizerState`.
      direction: `[B, d]`.
      settings: an object with `gradient_tolerance`, `f_absolute_tolerance`
        and `max_line_search_iterations`.

    Returns:
      The new `OptimizerState` and `moved` (`[B]` bool): the paths that took a
      step.
    """
    active = state.active
    slope = tf.reduce_sum(state.gradient * direction, axis=-1)
    direction = tf.where((slope < 0.0)[:, tf.newaxis], direction, -state.gradient)
    search = line_search.weak_wolfe(
        objective,
        state.position,
        state.value,
        state.gradient,
        direction,
        active,
        settings.max_line_search_iterations,
    )
    moved = active & search.accepted
    failed = state.failed | (active & ~moved)
    done, count = _converged(
        state,
        search.value,
        search.gradient,
        settings.gradient_tolerance,
        settings.f_absolute_tolerance,
    )
    converged = state.converged | (moved & done)
    new_position = state.position + search.step[:, tf.newaxis] * direction
    return (
        OptimizerState(
            position=tf.where(moved[:, tf.newaxis], new_position, state.position),
            value=search.value,
            gradient=search.gradient,
            converged=converged,
            failed=failed,
            num_evaluations=state.num_evaluations + search.num_evaluations,
            small_changes=tf.where(moved, count, state.small_changes),
        ),
        moved,
    )
