"""The fit loop: compiled chunks of steps, callbacks on the host in between.

`run_fit` is the driver of `fit_surrogate_posterior` called eagerly. Every
step, the first included, runs in the same compiled function
(`steps.CompiledSteps`, one `training_step.TrainingStep` per iteration); the
host calls it once per chunk and, in between, runs the fit's callbacks
(`callbacks.py`: the progress line, checkpoints, the k-hat report) and reads
the non-finite flag:

```none
specs      = first_trace(loss)                 # variables, state shapes
restored   = callbacks' on_fit_begin           # a checkpoint, if any
state      = restored or fresh_state(seed)
while steps remain and not converged:
    steps_run, state, finite, trace = compiled_steps(state, done, n)
    raise NonFiniteLossError if not finite
    callbacks' on_chunk_end
```

The loss is traced twice per fit, once without compiling (`first_trace`) and
once inside the compiled steps; XLA compiles once.
"""

import functools
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.fitting import distributed
from tfp_vi_estimators.fitting.callbacks import ChunkEnd, FitContext, concat
from tfp_vi_estimators.fitting.steps import CompiledSteps, first_trace
from tfp_vi_estimators.training_step import TrainingStep


class NonFiniteLossError(FloatingPointError):
    """A fit met a non-finite loss or gradient; `step` is the failing step."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def run_fit(
    loss_fn,
    estimator,
    arguments,
    *,
    max_chunk,
    callbacks=(),
    dataset=None,
    strategy=None,
    surrogate_variables=(),
):
    """Runs a fit eagerly; returns the trace, `num_steps` long (padded if converged).

    Args:
      loss_fn: `loss_fn(seed, batch)` returning a `LossEvaluation` (one
        replica's share under a strategy).
      estimator: the loss's `GradientEstimator`.
      arguments: the fit's checked `FitArguments`.
      max_chunk: the most steps of one compiled call.
      callbacks: `callbacks.FitCallback`s, run in order.
      dataset: a repeated `tf.data.Dataset` of batches, or `None`. A step then
        reads a batch; the loop runs in a graph and, with `jit_compile`, each
        step is XLA-compiled on its own (XLA cannot read an iterator).
      strategy: the `tf.distribute` strategy in scope, or `None`.
      surrogate_variables: the surrogate's variables (to find the distributed
        variables behind the local copies a tape watched).

    Raises:
      NonFiniteLossError: at the first step whose loss or gradient is not
        finite (its update is not applied).
    """
    several = strategy is not None and strategy.num_replicas_in_sync > 1
    seeded = arguments.seed is not None or any(c.needs_seed for c in callbacks)
    seed_state = _initial_seed_state(arguments.seed, seeded)
    batch_spec = (
        None if dataset is None else distributed.replica_batch_spec(strategy, dataset)
    )
    specs = first_trace(loss_fn, estimator, arguments, seed_state, seeded, batch_spec)
    variables = _trained_variables(specs, arguments, strategy, surrogate_variables)
    _build_optimizer(arguments.optimizer, variables)
    step = _training_step(loss_fn, estimator, arguments, variables, strategy, several)
    compiled = CompiledSteps(
        step,
        estimator,
        arguments,
        specs,
        seeded,
        max_chunk,
        xla=_xla(arguments.jit_compile, dataset, several),
    )
    # One process's iterator is saved with the checkpoints; replicas' are not.
    iterator = None if dataset is None or several else iter(dataset)
    fit = FitContext(
        num_steps=arguments.num_steps,
        max_chunk=max_chunk,
        variables=variables,
        optimizer=arguments.optimizer,
        criterion=arguments.convergence_criterion,
        specs=specs,
        iterator=iterator,
        strategy=strategy,
    )
    steps_done, state, traces = _begin(fit, callbacks, compiled, seed_state)
    if dataset is not None and several:
        iterator = distributed.replica_batches(strategy, dataset, steps_done)
    steps_done = _run_chunks(
        compiled, fit, callbacks, iterator, state, steps_done, traces
    )
    for c in callbacks:
        c.on_fit_end(steps_done)
    return _padded(concat(traces), steps_done, arguments.num_steps)


def _trained_variables(specs, arguments, strategy, surrogate_variables):
    """The variables found by the first trace (the distributed ones under a
    strategy), checked to be there."""
    variables = specs.variables
    if strategy is not None and arguments.trainable_variables is None:
        variables = distributed.distributed_variables(variables, surrogate_variables)
    return _checked_variables(variables)


def _begin(fit, callbacks, compiled, seed_state):
    """`(steps_done, state, traces)` to start from: a callback's restored
    checkpoint, or a fresh state; the callbacks then begin their steps."""
    restored = [r for r in (c.on_fit_begin(fit) for c in callbacks) if r is not None]
    steps_done, state, traces = 0, None, []
    if restored:
        steps_done, state, trace = restored[0]
        traces.append(trace)
    if state is None:
        state = compiled.fresh_state(seed_state, fit.variables)
    for c in callbacks:
        c.on_steps_begin(steps_done)
    return steps_done, state, traces


def _run_chunks(compiled, fit, callbacks, iterator, state, steps_done, traces):
    """The steps, a chunk at a time; appends to `traces`.

    Returns:
      The number of steps done (fewer than `num_steps` once converged).
    """
    converged = _converged(fit, state, steps_done)
    while steps_done < fit.num_steps and not converged:
        limits = [c.chunk_limit(steps_done) for c in callbacks]
        length = min(
            [fit.max_chunk, fit.num_steps - steps_done]
            + [n for n in limits if n is not None]
        )
        started = time.perf_counter()
        steps_run, state, finite, trace = compiled(state, steps_done, length, iterator)
        steps_run = int(steps_run)
        if not bool(finite):
            _raise_not_finite(steps_done + steps_run - 1, state, fit.variables)
        traces.append(tf.nest.map_structure(lambda t, n=steps_run: t[:n], trace))
        steps_done += steps_run
        converged = _converged(fit, state, steps_done)
        chunk = ChunkEnd(
            steps_done, steps_run, state, time.perf_counter() - started, converged
        )
        for c in callbacks:
            c.on_chunk_end(chunk, traces)
    return steps_done


def _training_step(loss_fn, estimator, arguments, variables, strategy, several):
    """The step every iteration runs: on this device, or on every replica
    (XLA then compiles each replica's loss and gradients)."""
    loss_fn = functools.partial(_without_parameters, loss_fn)
    if strategy is None:
        return TrainingStep(
            loss_fn, arguments.optimizer, variables, skip_non_finite=True
        )
    return distributed.ReplicaTrainingStep(
        strategy,
        estimator,
        loss_fn,
        arguments.optimizer,
        variables,
        jit_compile=bool(arguments.jit_compile) and several,
    )


def _xla(jit_compile, dataset, several):
    """What XLA compiles: the whole chunk, each step (reading an iterator, which
    XLA cannot), or nothing here (replicas compile their own losses)."""
    if not jit_compile or several:
        return None
    return "loop" if dataset is None else "step"


def _initial_seed_state(seed, seeded):
    """`sanitize_seed(seed, salt='minimize')`, as `tfp.math.minimize` starts.

    With checkpoints and no seed, a random seed is drawn (and saved with the
    state) so a resumed fit continues the same sample stream.
    """
    if not seeded:
        return tf.constant(-1, tf.int32)
    return tfp.random.sanitize_seed(seed, salt="minimize")


def _build_optimizer(optimizer, variables):
    """Creates the optimizer's slots now: they cannot be made inside `tf.cond`."""
    if getattr(optimizer, "built", False):
        return
    if hasattr(optimizer, "build"):
        optimizer.build(variables)
    elif hasattr(optimizer, "_create_all_weights"):  # legacy tf_keras
        optimizer._create_all_weights(variables)


def _converged(fit, state, steps_done):
    return (
        fit.criterion is not None
        and steps_done > 0
        and bool(tf.reduce_all(state.quantities.has_converged))
    )


def _padded(result, steps_done, num_steps):
    """Pads a converged fit's trace with its last values, as tfp does."""
    if steps_done == num_steps:
        return result
    pad = num_steps - steps_done
    return tf.nest.map_structure(
        lambda t: tf.concat([t, tf.repeat(t[-1:], pad, axis=0)], axis=0), result
    )


def _raise_not_finite(step, state, variables):
    """`NonFiniteLossError` naming the step and what was not finite in it."""
    state = state.quantities
    parts = []
    if not np.all(np.isfinite(state.loss)):
        parts.append("the loss")
    bad = [
        v.name
        for v, g in zip(variables, state.gradients, strict=True)
        if not np.all(np.isfinite(g))
    ]
    if bad:
        parts.append("the gradient of " + ", ".join(repr(n) for n in bad))
    kept = "the initial values" if step == 0 else f"the values after step {step - 1}"
    raise NonFiniteLossError(
        f"Non-finite value at step {step}: {' and '.join(parts)} "
        f"{'are' if len(parts) + len(bad) > 2 else 'is'} not finite. "
        f"The update was not applied; the variables keep {kept}. Lower the "
        "learning rate, check the target's support, or initialize the "
        "surrogate closer to the target.",
        step=step,
    )


def _without_parameters(loss_fn, parameters, seed, batch):
    """`loss_fn(seed, batch)`: the loss reads its variables itself."""
    del parameters
    return loss_fn(seed, batch)


def _checked_variables(variables):
    if not variables:
        raise ValueError(
            "Nothing to train: the loss reads no trainable variable and "
            "`trainable_variables` is empty or None. Build the surrogate "
            "from `tf.Variable`s (or `tfp.util.TransformedVariable`s), or "
            "pass `trainable_variables`."
        )
    return variables
