"""A chunk of fit steps in one compiled function, and the first trace that sizes it.

`CompiledSteps(state, start, n, iterator)` runs steps `start, start + 1, ...`
of a fit: a `tf.while_loop` of at most `max_chunk` iterations that stops
early after a non-finite step or at convergence. Each iteration is one
`training_step.TrainingStep` and the bookkeeping `tfp.math.minimize` traces
(its seed split, convergence criterion and `trace_fn`):

```none
seed[t], state[t + 1]   = split_seed(state[t], n=2)
state, result           = training_step(state, seed[t], batch[t])
has_converged, c_state  = criterion.one_step(t, loss, grads, parameters, ...)
trace[t]                = trace_fn(MinimizeTraceableQuantities(...))
```

`first_trace` traces the loss once without compiling or running it, to find
the variables (those the loss reads, unless given) and the shapes of the loop
state and of a trace row.
"""

import collections
import functools

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.training_step import StepState, unique_variables

__all__ = ["CompiledSteps", "LoopState", "first_trace"]

_Traceable = tfp.math.MinimizeTraceableQuantities

# What the loop carries from step to step: the quantities `tfp.math.minimize`
# traces, and the gradient estimator's state (`GradientEstimator.combine`).
LoopState = collections.namedtuple("LoopState", ["quantities", "estimator"])

# The shapes found by the first trace.
Specs = collections.namedtuple("Specs", ["variables", "state", "trace"])


def split_seed(seed_state, seeded):
    """`(seed, next_seed_state)`, as `tfp.math.minimize` splits (none unseeded)."""
    if not seeded:
        return None, seed_state
    seed, next_seed = tfp.random.split_seed(seed_state, n=2)
    return seed, next_seed


def initial_quantities(criterion, loss, grads, parameters, seed_state):
    """The traceable quantities before step 1, as `tfp.math.minimize` builds them."""
    criterion_state = ()
    if criterion is not None:
        criterion_state = criterion.bootstrap(loss, grads, parameters)
    return _Traceable(
        loss=loss,
        gradients=grads,
        parameters=parameters,
        step=tf.constant(0, tf.int32),
        has_converged=tf.zeros(tf.shape(loss), dtype=tf.bool),
        convergence_criterion_state=criterion_state,
        optimizer_state=(),
        seed=seed_state,
    )


def traced(trace_fn, state):
    """`trace_fn` of a loop state's traceable quantities, as tensors."""
    quantities = getattr(state, "quantities", state)
    return tf.nest.map_structure(tf.convert_to_tensor, trace_fn(quantities))


def first_trace(loss_fn, estimator, arguments, seed_state, seeded, batch_spec):
    """The variables and the shapes of the loop state and a trace row.

    Traces `loss_fn(seed, batch)` once in a `tf.function` that is neither
    compiled nor run: no gradient is computed (they have their variables'
    shapes) and no optimizer is applied.

    Returns:
      `Specs(variables, state, trace)`; the variables as found (the caller
      maps them to distributed ones under a strategy).
    """
    found = []
    given = arguments.trainable_variables

    def first_state(seed_state, batch):
        seed, next_seed = split_seed(seed_state, seeded)
        with tf.GradientTape(watch_accessed_variables=given is None) as tape:
            for v in given or []:
                tape.watch(v)
            loss = loss_fn(seed, batch).loss
        found.extend(given or tape.watched_variables())
        parameters = [tf.identity(v) for v in unique_variables(found)]
        grads = [tf.zeros_like(p) for p in parameters]
        quantities = initial_quantities(
            arguments.convergence_criterion, loss, grads, parameters, next_seed
        )
        state = LoopState(quantities, estimator.initial_state(parameters))
        return state, traced(arguments.trace_fn, quantities)

    concrete = tf.function(first_state, autograph=False).get_concrete_function(
        seed_state, batch_spec
    )
    state_spec, trace_spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype), concrete.structured_outputs
    )
    return Specs(unique_variables(found), state_spec, trace_spec)


class CompiledSteps:
    """`(steps_run, state, finite, trace)` of up to `max_chunk` steps, compiled.

    Args:
      training_step: the `TrainingStep` of every iteration (it skips a
        non-finite step's update).
      estimator: the loss's `GradientEstimator` (for the fresh state).
      arguments: the fit's checked `FitArguments` (criterion, trace function,
        compilation).
      specs: the `Specs` of `first_trace`.
      seeded: whether the steps draw seeded samples.
      max_chunk: the most steps of one call (the trace buffer's rows).
      xla: what XLA compiles: `'loop'` (the whole chunk), `'step'` (each
        step on its own, for steps that read a `tf.data` iterator, which XLA
        cannot) or `None` (nothing; replicas compile their own losses).
    """

    def __init__(
        self,
        training_step,
        estimator,
        arguments,
        specs,
        seeded,
        max_chunk,
        xla,
    ):
        self._training_step = training_step
        self._estimator = estimator
        self._criterion = arguments.convergence_criterion
        self._trace_fn = arguments.trace_fn
        self._specs = specs
        self._seeded = seeded
        self._max_chunk = max_chunk
        self._compile_each_step = xla == "step"
        # A fresh partial per fit: TF's retracing warning keys on the code
        # object, and every fit traces anew.
        self._function = tf.function(
            functools.partial(self._steps),
            autograph=False,
            jit_compile=(xla == "loop") or None,
        )

    def __call__(self, state, start, num_steps, iterator=None):
        return self._function(
            state, tf.constant(start, tf.int32), tf.constant(num_steps), iterator
        )

    def fresh_state(self, seed_state, variables):
        """The state before step 0: zeros but for the seed state, and the
        estimator's initial state."""
        quantities = tf.nest.map_structure(
            lambda s: tf.zeros(s.shape, s.dtype), self._specs.state.quantities
        )
        zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
        return LoopState(
            quantities._replace(seed=seed_state), self._estimator.initial_state(zeros)
        )

    def _step(self, previous_state, step, batch=None):
        """Step `step` from the state after step `step - 1`, as `tfp.math.minimize`."""
        previous = previous_state.quantities
        seed, next_seed = split_seed(previous.seed, self._seeded)
        step_state, result = self._training_step(
            StepState((), (), previous_state.estimator), seed, batch
        )
        has_converged = previous.has_converged
        criterion_state = previous.convergence_criterion_state
        if self._criterion is not None:
            has_converged, criterion_state = tf.cond(
                step > 0,
                lambda: self._criterion.one_step(
                    step,
                    result.loss,
                    result.gradients,
                    result.parameters,
                    criterion_state,
                ),
                lambda: (
                    tf.zeros(tf.shape(result.loss), tf.bool),
                    self._criterion.bootstrap(
                        result.loss, result.gradients, result.parameters
                    ),
                ),
            )
        quantities = _Traceable(
            loss=result.loss,
            gradients=result.gradients,
            parameters=result.parameters,
            step=step,
            has_converged=has_converged,
            convergence_criterion_state=criterion_state,
            optimizer_state=(),
            seed=next_seed,
        )
        return LoopState(quantities, step_state.estimator), result.finite

    def _steps(self, state, start, num_steps, iterator=None):
        """Steps `start, start + 1, ...`: `num_steps` of them, or fewer.

        Returns:
          `(steps_run, state, finite, trace)`: the trace has `max_chunk` rows,
          of which the first `steps_run` are this call's.
        """
        specs = tf.nest.flatten(self._specs.trace)
        arrays = [
            tf.TensorArray(s.dtype, size=self._max_chunk, element_shape=s.shape)
            for s in specs
        ]
        step_fn = self._step
        if iterator is not None and self._compile_each_step:
            step_fn = tf.function(step_fn, autograph=False, jit_compile=True)

        def keep_going(i, state, finite, arrays):
            converged = tf.reduce_all(state.quantities.has_converged)
            return (i < num_steps) & finite & ~converged

        def body(i, state, finite, arrays):
            batch = None if iterator is None else iterator.get_next()
            state, finite = step_fn(state, start + i, batch)
            row = tf.nest.flatten(traced(self._trace_fn, state))
            arrays = [a.write(i, t) for a, t in zip(arrays, row, strict=True)]
            return i + 1, state, finite, arrays

        steps_run, state, finite, arrays = tf.while_loop(
            keep_going,
            body,
            (tf.constant(0), state, tf.constant(True), arrays),
            maximum_iterations=self._max_chunk,
        )
        trace = tf.nest.pack_sequence_as(self._specs.trace, [a.stack() for a in arrays])
        return steps_run, state, finite, trace
