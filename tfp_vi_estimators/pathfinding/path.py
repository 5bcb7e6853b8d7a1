"""One compiled loop over L-BFGS iterations for a batch of Pathfinder paths.

Each turn of the loop advances every active path by one L-BFGS iteration
(`lbfgs.step`), then, from the step it just took, updates the pair history and
Pathfinder's diagonal estimate (`inverse_hessian.py`), builds the Gaussian at
the new iterate, estimates its ELBO with `num_elbo_draws` draws, and keeps it
if it is the best of its path so far:

```none
for l = 1..L, all paths at once, while some path is active:
  d = -H~ grad f(x_{l-1})        (H~: the history with a scalar initial estimate)
  x_l, grad f(x_l) <- weak Wolfe line search along d (line_search.py)
  (s, z) = (x_l - x_{l-1}, grad f(x_l) - grad f(x_{l-1}))
  if s^T z > eps ||z||^2: update diag(alpha), push (s, z)     (history of m pairs)
  q_l = N(x_l - H_l grad f(x_l), H_l)                (H_l: with diag(alpha), [1])
  ELBO_l = 1/K sum_k log p(y_k) - log q_l(y_k),  y_k ~ q_l  (same seed for every l)
  keep q_l where ELBO_l > best so far
```

The optimizer's search direction uses the usual scalar initial estimate
`s^T z / z^T z` of the newest pair (`1 / max(|g|, 1)` before the first, so
that the first trial step has length at most 1); the Gaussians use
Pathfinder's diagonal one, built from the same pairs, as in [1].

#### References

[1] Lu Zhang, Bob Carpenter, Andrew Gelman and Aki Vehtari. Pathfinder:
    Parallel quasi-Newton variational inference. JMLR 23(306), 2022.
"""

import dataclasses
import typing

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import low_rank
from tfp_vi_estimators.pathfinding import inverse_hessian, lbfgs

tfd = tfp.distributions

__all__ = ["PathSettings", "PathOutcome", "call_flat", "run_paths", "gaussian"]


@dataclasses.dataclass(frozen=True)
class PathSettings:
    """The checked, static settings of a run (Python values)."""

    max_iterations: int
    history_size: int
    num_elbo_draws: int
    gradient_tolerance: float
    f_absolute_tolerance: float
    max_line_search_iterations: int


class _Best(typing.NamedTuple):
    loc: tf.Tensor  # [B, d]
    diag: tf.Tensor  # [B, d]
    u: tf.Tensor  # [B, d, k]
    v: tf.Tensor  # [B, d, k]
    elbo: tf.Tensor  # [B]
    iteration: tf.Tensor  # [B] int32, 0 while none


class _State(typing.NamedTuple):
    step: tf.Tensor
    optimizer: lbfgs.OptimizerState
    alpha: tf.Tensor
    s_history: tf.Tensor
    z_history: tf.Tensor
    valid: tf.Tensor
    num_iterations: tf.Tensor  # [B] int32
    best: _Best
    elbo_path: tf.Tensor  # [L + 1, B]


class PathOutcome(typing.NamedTuple):
    """What the loop hands back, batch `[B]` first (see `pathfinder`)."""

    best: _Best
    elbo_path: tf.Tensor
    num_iterations: tf.Tensor
    converged: tf.Tensor
    failed: tf.Tensor
    position: tf.Tensor
    num_gradient_evaluations: tf.Tensor


def call_flat(target_log_prob_fn, points):
    """`target_log_prob_fn` on `[..., d]` points, called once with `[n, d]`."""
    flat = tf.reshape(points, [-1, points.shape[-1]])
    return tf.reshape(target_log_prob_fn(flat), tf.shape(points)[:-1])


def gaussian(loc, diag, u, v):
    """`N(loc, A A^T)`, `A = diag(diag) + u v^T` (`low_rank.low_rank_normal`)."""
    return low_rank.low_rank_normal(loc, diag, u, v, name="Pathfinder")


def _elbo(target_log_prob_fn, distribution, num_draws, seed):
    """`-monte_carlo_variational_loss(p, q, sample_size=K, seed=seed)`, per path;
    non-finite estimates become `-inf`."""
    sample_seed, _ = tfp.random.split_seed(seed, 2)  # as the loss splits it
    draws, log_q = distribution.experimental_sample_and_log_prob(
        num_draws, seed=sample_seed
    )
    log_p = call_flat(target_log_prob_fn, draws)
    elbo = tf.reduce_mean(log_p - log_q, axis=0)
    return tf.where(tf.math.is_nan(elbo), tf.constant(-np.inf, elbo.dtype), elbo)


def _value_and_gradient(target_log_prob_fn):
    def objective(x):
        return tfp.math.value_and_gradient(
            lambda y: -call_flat(target_log_prob_fn, y), x
        )

    return objective


def _initial_state(objective, position, settings):
    batch, dim = position.shape
    dtype = position.dtype
    rank = min(dim, 2 * settings.history_size)
    history = tf.zeros([batch, settings.history_size, dim], dtype)
    best = _Best(
        loc=position,
        diag=tf.ones_like(position),
        u=tf.zeros([batch, dim, rank], dtype),
        v=tf.zeros([batch, dim, rank], dtype),
        elbo=tf.fill([batch], tf.constant(-np.inf, dtype)),
        iteration=tf.zeros([batch], tf.int32),
    )
    return _State(
        step=tf.constant(0),
        optimizer=lbfgs.initial_state(objective, position),
        alpha=tf.ones_like(position),
        s_history=history,
        z_history=history,
        valid=tf.zeros([batch, settings.history_size], tf.bool),
        num_iterations=tf.zeros([batch], tf.int32),
        best=best,
        elbo_path=tf.fill(
            [settings.max_iterations + 1, batch], tf.constant(np.nan, dtype)
        ),
    )


def _search_direction(state):
    """`-H~ g`: L-BFGS with the scalar initial estimate of the newest pair."""
    s, z = state.s_history[:, -1], state.z_history[:, -1]
    gradient = state.optimizer.gradient
    first = 1.0 / tf.maximum(tf.norm(gradient, axis=-1), 1.0)
    newest = tf.math.divide_no_nan(
        tf.reduce_sum(s * z, axis=-1), tf.reduce_sum(z * z, axis=-1)
    )
    scalar = tf.where(state.valid[:, -1], newest, first)
    factors = inverse_hessian.inverse_hessian_factors(
        scalar[:, tf.newaxis] * tf.ones_like(state.alpha),
        state.s_history,
        state.z_history,
        state.valid,
    )
    return -factors.matvec(gradient)


def _update_history(state, stepped, moved):
    s = stepped.position - state.optimizer.position
    z = stepped.gradient - state.optimizer.gradient
    accepted = moved & inverse_hessian.accept_pair(s, z)
    alpha = inverse_hessian.update_diagonal(state.alpha, s, z, accepted)
    s_history, _ = inverse_hessian.push_pair(state.s_history, state.valid, s, accepted)
    z_history, valid = inverse_hessian.push_pair(
        state.z_history, state.valid, z, accepted
    )
    return alpha, s_history, z_history, valid


def _keep_best(best, candidate, elbo, step):
    better = elbo > best.elbo

    def pick(new, old):
        shape = tf.concat(
            [tf.shape(better), tf.ones([new.shape.rank - 1], tf.int32)], 0
        )
        return tf.where(tf.reshape(better, shape), new, old)

    return _Best(
        *(pick(n, o) for n, o in zip(candidate, best[:4], strict=True)),
        elbo=tf.where(better, elbo, best.elbo),
        iteration=tf.where(better, step, best.iteration),
    )


def _candidate(stepped, alpha, s_history, z_history, valid):
    """Pathfinder's Gaussian at the new iterate: `(loc, diag, u, v)`."""
    factors = inverse_hessian.inverse_hessian_factors(
        alpha, s_history, z_history, valid
    )
    loc = inverse_hessian.newton_mean(stepped.position, stepped.gradient, factors)
    scale = inverse_hessian.scale_operator(factors)
    return loc, scale.base_operator.diag, scale.u, scale.v


def _body(target_log_prob_fn, objective, settings, elbo_seed):
    def body(state):
        stepped, moved = lbfgs.step(
            objective, state.optimizer, _search_direction(state), settings
        )
        alpha, s_history, z_history, valid = _update_history(state, stepped, moved)
        candidate = _candidate(stepped, alpha, s_history, z_history, valid)
        elbo = _elbo(
            target_log_prob_fn,
            gaussian(*candidate),
            settings.num_elbo_draws,
            elbo_seed,
        )
        elbo = tf.where(moved, elbo, tf.constant(-np.inf, elbo.dtype))
        step = state.step + 1
        recorded = tf.where(moved, elbo, state.elbo_path[step])
        return [
            _State(
                step=step,
                optimizer=stepped,
                alpha=alpha,
                s_history=s_history,
                z_history=z_history,
                valid=valid,
                num_iterations=state.num_iterations + tf.cast(moved, tf.int32),
                best=_keep_best(state.best, candidate, elbo, step),
                elbo_path=tf.tensor_scatter_nd_update(
                    state.elbo_path, [[step]], recorded[tf.newaxis]
                ),
            )
        ]

    return body


def run_paths(target_log_prob_fn, position, settings, elbo_seed) -> PathOutcome:
    """Runs Pathfinder's optimization and ELBO search for `[B, d]` starts.

    Args:
      target_log_prob_fn: callable `[n, d] -> [n]`, the log-density.
      position: `[B, d]` floating `Tensor` of starting points (static shape).
      settings: a `PathSettings`.
      elbo_seed: stateless seed shared by every iterate's ELBO estimate.

    Returns:
      A `PathOutcome`.
    """
    objective = _value_and_gradient(target_log_prob_fn)
    state = _initial_state(objective, position, settings)

    def cond(state):
        return (state.step < settings.max_iterations) & tf.reduce_any(
            state.optimizer.active
        )

    state = tf.while_loop(
        cond, _body(target_log_prob_fn, objective, settings, elbo_seed), [state]
    )[0]
    return PathOutcome(
        best=state.best,
        elbo_path=state.elbo_path,
        num_iterations=state.num_iterations,
        converged=state.optimizer.converged,
        failed=state.optimizer.failed,
        position=state.optimizer.position,
        num_gradient_evaluations=state.optimizer.num_evaluations,
    )
