"""`fit_surrogate_posterior_stateless`: `tfp.vi`'s functional fit, with our loss."""

import numbers

import numpy as np
import tensorflow as tf

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.estimators.plan import Density
from tfp_vi_estimators.fitting.arguments import (
    check_convergence_criterion,
    check_optional_bool,
)
from tfp_vi_estimators.fitting.stateless_loop import minimize_stateless
from tfp_vi_estimators.loss_config import LossConfig, LossSettings, Problem
from tfp_vi_estimators.variational_loss import evaluate

__all__ = ["fit_surrogate_posterior_stateless"]


def _trace_loss(traceable_quantities):
    return traceable_quantities.loss


def fit_surrogate_posterior_stateless(
    target_log_prob_fn,
    build_surrogate_posterior_fn,
    initial_parameters,
    optimizer,
    num_steps,
    convergence_criterion=None,
    trace_fn=_trace_loss,
    discrepancy_fn=kl_reverse,
    sample_size=1,
    importance_sample_size=1,
    gradient_estimator=GradientEstimators.REPARAMETERIZATION,
    jit_compile=False,
    seed=None,
    name="fit_surrogate_posterior",
    *,
    sampling="iid",
):
    """Fits a surrogate built from explicit parameters, as `tfp.vi`'s does.

    The functional twin of `fit_surrogate_posterior` (same signature, defaults
    and, for the same seed, trace as `tfp.vi.fit_surrogate_posterior_stateless`):
    the surrogate is `build_surrogate_posterior_fn(*parameters)`, the
    parameters are plain tensors, and `tfp.math.minimize_stateless` runs
    `num_steps` steps of

    ```none
    loss(params) = 1/S sum_s f(log 1/K sum_k p(z[s, k]) / q_params(z[s, k]))
    updates, state = optimizer.update(grad loss(params), state, params)
    params = params + updates
    ```

    with the gradient of `gradient_estimator` (any `GradientEstimators`
    member or estimator object; the stopped surrogate of the doubly
    reparameterized estimators is built from the stopped parameters). The
    optimizer is anything with optax's `init(params)` and
    `update(grads, state, params)`: `optax` in JAX, or
    `tfp_vi_estimators.optimizers.adam` / `sgd` in TensorFlow. With
    `jit_compile=True` the steps compile under XLA.

    Args:
      target_log_prob_fn: the unnormalized target log-density (called as the
        loss calls it; may take `seed=`).
      build_surrogate_posterior_fn: callable `(*parameters) -> surrogate`.
      initial_parameters: list or tuple of (structures of) `Tensor`s.
      optimizer: object with `init(params)` and `update(grads, state, params)`.
      num_steps: Python integer, the number of optimizer steps.
      convergence_criterion: optional
        `tfp.optimizer.convergence_criteria.ConvergenceCriterion`.
      trace_fn: callable on `tfp.math.MinimizeTraceableQuantities`. Default
        value: trace the loss.
      discrepancy_fn: Csiszar function in log space. Default value:
        `kl_reverse`.
      sample_size: positive integer, independent draws per step.
      importance_sample_size: positive integer, particles per draw.
      gradient_estimator: the estimator. Default value: REPARAMETERIZATION.
      jit_compile: compile the steps with XLA. Default value: `False`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.
      name: name scope. Default value: `'fit_surrogate_posterior'`.
      sampling: keyword-only; `'iid'` or `'rqmc'` (randomized quasi-Monte
        Carlo base noise), as for `monte_carlo_variational_loss`. Default
        value: `'iid'` (`tfp.vi`'s).

    Returns:
      final_parameters: the parameters after `num_steps` steps.
      results: the stacked values of `trace_fn`.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument, before
        any step (the loss's arguments are checked on the surrogate built
        from `initial_parameters`): `initial_parameters` not a non-empty list
        or tuple of floating-point tensors, or, when their values are known
        at the call (not inside a `tf.function`), holding NaN or infinite
        values. As in `tfp.vi`, the steps themselves are not guarded: a
        non-finite loss during the fit shows in the trace (trace the loss)
        rather than raising.
    """
    _check_fit_arguments(convergence_criterion, trace_fn, jit_compile, name)
    config = _checked_config(
        target_log_prob_fn,
        build_surrogate_posterior_fn,
        initial_parameters,
        optimizer,
        num_steps,
        LossSettings(
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=discrepancy_fn,
            gradient_estimator=gradient_estimator,
            sampling=sampling,
        ),
    )
    checks.check_seed(seed)
    stopped_needed = Density.STOPPED_PARAMETERS in config.estimator.plan.densities

    def evaluate_fn(*parameters, seed=None):
        stopped = None
        if stopped_needed:  # as tfp.vi: the surrogate of the stopped parameters
            stopped = build_surrogate_posterior_fn(
                *tf.nest.map_structure(tf.stop_gradient, parameters)
            )
        # The options were checked on the surrogate of the initial
        # parameters; each step's surrogate is built by the same function.
        problem = Problem(
            config.target_log_prob_fn,
            build_surrogate_posterior_fn(*parameters),
            stopped,
        )
        return evaluate(LossConfig(problem, config.options), seed)

    return minimize_stateless(
        evaluate_fn,
        config.estimator,
        init=initial_parameters,
        num_steps=num_steps,
        optimizer=optimizer,
        convergence_criterion=convergence_criterion,
        trace_fn=trace_fn,
        jit_compile=jit_compile,
        seed=seed,
        name=name,
    )


def _check_fit_arguments(convergence_criterion, trace_fn, jit_compile, name):
    check_convergence_criterion(convergence_criterion)
    checks.check_callable("trace_fn", trace_fn)
    check_optional_bool("jit_compile", jit_compile)
    checks.check_name(name)


def _checked_config(
    target_log_prob_fn, build_fn, initial_parameters, optimizer, num_steps, settings
):
    checks.check_callable("build_surrogate_posterior_fn", build_fn)
    _check_initial_parameters(initial_parameters)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            "`optimizer` must have optax's `init(params)` and "
            "`update(grads, state, params)` (for example "
            f"`tfp_vi_estimators.optimizers.adam(0.1)`); got {optimizer!r}."
        )
    checks.check_positive_integer("num_steps", num_steps)
    surrogate = build_fn(*initial_parameters)
    checks.check_distribution(
        "build_surrogate_posterior_fn(*initial_parameters)", surrogate
    )
    return settings.config_for(target_log_prob_fn, surrogate)


def _check_initial_parameters(initial_parameters):
    """A non-empty list or tuple of floating-point tensors, finite if known."""
    if not isinstance(initial_parameters, (list, tuple)):
        raise TypeError(
            "`initial_parameters` must be a list or tuple of Tensors (the "
            "arguments of `build_surrogate_posterior_fn`); got "
            f"{type(initial_parameters).__name__}."
        )
    leaves = tf.nest.flatten(initial_parameters)
    if not leaves:
        raise ValueError(
            "`initial_parameters` must hold at least one Tensor to optimize; got "
            f"{initial_parameters!r}."
        )
    for index, leaf in enumerate(leaves):
        _check_parameter(index, leaf)


def _check_parameter(index, leaf):
    """Leaf `index` of the flattened parameters: floating, finite if known."""
    if isinstance(leaf, (tf.Tensor, tf.Variable)):
        floating = leaf.dtype.is_floating
    elif isinstance(leaf, (numbers.Real, np.ndarray, np.generic)):
        floating = np.asarray(leaf).dtype.kind == "f"  # not bool, int or str
    else:
        floating = False
    if not floating:
        raise TypeError(
            "`initial_parameters` must hold floating-point Tensors (they are "
            f"differentiated); its leaf {index} is {leaf!r} of type "
            f"{type(leaf).__name__}."
        )
    values = _static_values(leaf)
    if values is not None and not np.all(np.isfinite(values)):
        raise ValueError(
            f"`initial_parameters` must be finite; its leaf {index} holds "
            f"{np.sum(~np.isfinite(values))} NaN or infinite values."
        )


def _static_values(leaf):
    """The leaf's values if known without running a graph, else `None`."""
    if isinstance(leaf, tf.Variable):
        return leaf.numpy() if tf.executing_eagerly() else None
    if tf.is_tensor(leaf):
        return tf.get_static_value(leaf)
    return np.asarray(leaf)
