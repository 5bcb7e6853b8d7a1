"""The fit loop: one compiled function of many steps, host work between calls.

Every step, the first included, runs in the same compiled function, `_steps`:
a `tf.while_loop` of at most `max_chunk` iterations that stops early at a
non-finite step or at convergence. The host calls it once per chunk and, in
between, updates the progress line, writes a due checkpoint and reads the
stop flags. The loss is traced twice per fit, once without compiling (to find
the variables and the shapes of the loop state) and once inside `_steps`; XLA
compiles once.
"""

import collections
import functools
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.fitting import distributed
from tfp_vi_estimators.fitting.checkpoints import _CheckpointStore
from tfp_vi_estimators.training_step import StepState, TrainingStep

_Traceable = tfp.math.MinimizeTraceableQuantities

# What the loop carries from step to step: the quantities `tfp.math.minimize`
# traces, and the gradient estimator's state (`GradientEstimator.combine`).
_LoopState = collections.namedtuple("_LoopState", ["quantities", "estimator"])

# With a progress line, chunks aim at this many seconds so the line moves
# while a chunk's host round trip stays a small fraction of its time.
_SECONDS_PER_CHUNK = 0.25


class NonFiniteLossError(FloatingPointError):
    """A fit met a non-finite loss or gradient; `step` is the failing step."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class _FitLoop:
    """The optimization loop: compiled chunks of steps, host work in between."""

    def __init__(
        self,
        loss_fn,
        optimizer,
        num_steps,
        convergence_criterion,
        trace_fn,
        trainable_variables,
        jit_compile,
        seed,
        max_chunk,
        dataset=None,
        strategy=None,
        surrogate_variables=(),
        estimator=None,
    ):
        # `loss_fn(seed, batch)` returns a `LossEvaluation`; `estimator` (the
        # loss's) turns it into gradients and carries its state across steps.
        self._loss_fn = loss_fn
        self._estimator = estimator
        # With several replicas, `loss_fn` is one replica's loss; each step
        # runs it with `strategy.run` and all-reduces (`distributed.py`).
        self._strategy = strategy
        self._several = strategy is not None and strategy.num_replicas_in_sync > 1
        self._surrogate_variables = surrogate_variables
        # With data, a step reads a batch (`loss_fn(seed, batch)`); the loop
        # then runs in a graph and each step is XLA-compiled on its own, since
        # XLA cannot read a `tf.data` iterator. Under several replicas each
        # reads its share of the global batch.
        self._dataset = dataset
        self._batch_spec = (
            None
            if dataset is None
            else distributed.replica_batch_spec(strategy, dataset)
        )
        self._iterator = None
        self._optimizer = optimizer
        self._num_steps = num_steps
        self._criterion = convergence_criterion
        self._trace_fn = trace_fn
        self._trainable_variables = trainable_variables
        self._jit_compile = jit_compile
        self._seed = seed
        self._max_chunk = max_chunk
        # Set by `run`.
        self._variables = self._progress = self._store = self._every = None
        self._state_spec = self._trace_spec = self._steps_fn = None
        self._training_step = None
        self._seed_is_none = None

    # Traced parts.

    def _split(self, seed_state):
        if self._seed_is_none:
            return None, seed_state
        seed, next_seed = tfp.random.split_seed(seed_state, n=2)
        return seed, next_seed

    def _step(self, previous_state, step, batch=None):
        """Step `step` from the state after step `step - 1`, as `tfp.math.minimize`."""
        previous = previous_state.quantities
        seed, next_seed = self._split(previous.seed)
        step_state, result = self._training_step(
            StepState((), (), previous_state.estimator), seed, batch
        )
        loss, grads, parameters, finite = result
        estimator_state = step_state.estimator
        has_converged = previous.has_converged
        criterion_state = previous.convergence_criterion_state
        if self._criterion is not None:
            has_converged, criterion_state = tf.cond(
                step > 0,
                lambda: self._criterion.one_step(
                    step, loss, grads, parameters, criterion_state
                ),
                lambda: (
                    tf.zeros(tf.shape(loss), tf.bool),
                    self._criterion.bootstrap(loss, grads, parameters),
                ),
            )
        state = _Traceable(
            loss=loss,
            gradients=grads,
            parameters=parameters,
            step=step,
            has_converged=has_converged,
            convergence_criterion_state=criterion_state,
            optimizer_state=(),
            seed=next_seed,
        )
        return _LoopState(state, estimator_state), finite

    def _steps(self, state, start, num_steps, iterator=None):
        """Steps `start, start + 1, ...`: `num_steps` of them, or fewer.

        The loop stops after a step that is not finite (its update is not
        applied) or that converges.

        Returns:
          `(steps_run, state, finite, trace)`: the trace has `max_chunk` rows,
          of which the first `steps_run` are this call's.
        """
        arrays = [
            tf.TensorArray(s.dtype, size=self._max_chunk, element_shape=s.shape)
            for s in tf.nest.flatten(self._trace_spec)
        ]

        def keep_going(i, state, finite, arrays):
            converged = tf.reduce_all(state.quantities.has_converged)
            return (i < num_steps) & finite & ~converged

        step_fn = self._step
        if iterator is not None and self._jit_compile and not self._several:
            step_fn = tf.function(step_fn, autograph=False, jit_compile=True)

        def body(i, state, finite, arrays):
            batch = None if iterator is None else iterator.get_next()
            state, finite = step_fn(state, start + i, batch)
            trace = tf.nest.flatten(self._traced(state))
            arrays = [a.write(i, t) for a, t in zip(arrays, trace, strict=True)]
            return i + 1, state, finite, arrays

        steps_run, state, finite, arrays = tf.while_loop(
            keep_going,
            body,
            (tf.constant(0), state, tf.constant(True), arrays),
            maximum_iterations=self._max_chunk,
        )
        trace = tf.nest.pack_sequence_as(self._trace_spec, [a.stack() for a in arrays])
        return steps_run, state, finite, trace

    def _traced(self, state):
        """`trace_fn` of a loop state's traceable quantities."""
        quantities = getattr(state, "quantities", state)
        return tf.nest.map_structure(tf.convert_to_tensor, self._trace_fn(quantities))

    # Host side: the variables and the shapes of the state, from one trace.

    def _trace_specs(self, seed_state):
        """Finds the variables and the loop state's shapes by tracing the loss once.

        Nothing is compiled or run: the trace computes no gradient (they have
        their variables' shapes) and the optimizer is not applied.
        """
        found = []

        def first_state(seed_state, batch):
            seed, next_seed = self._split(seed_state)
            with tf.GradientTape(
                watch_accessed_variables=self._trainable_variables is None
            ) as tape:
                for v in self._trainable_variables or []:
                    tape.watch(v)
                loss = self._loss_fn(seed, batch).loss
            found.extend(self._trainable_variables or tape.watched_variables())
            parameters = [tf.identity(v) for v in _unique(found)]
            grads = [tf.zeros_like(p) for p in parameters]
            state = self._initial_state(loss, grads, parameters, next_seed)
            estimator_state = self._estimator.initial_state(parameters)
            return _LoopState(state, estimator_state), self._traced(state)

        concrete = tf.function(
            functools.partial(first_state), autograph=False
        ).get_concrete_function(seed_state, self._batch_spec)
        variables = _unique(found)
        if self._strategy is not None and self._trainable_variables is None:
            variables = distributed.distributed_variables(
                variables, self._surrogate_variables
            )
        self._variables = _checked_variables(variables)
        self._state_spec, self._trace_spec = tf.nest.map_structure(
            lambda t: tf.TensorSpec(t.shape, t.dtype), concrete.structured_outputs
        )

    def _initial_state(self, loss, grads, parameters, seed_state):
        criterion_state = ()
        if self._criterion is not None:
            criterion_state = self._criterion.bootstrap(loss, grads, parameters)
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

    def _fresh_state(self, seed_state):
        """The state before step 0: zeros, but for the seed state, and the
        estimator's initial state."""
        quantities = tf.nest.map_structure(
            lambda s: tf.zeros(s.shape, s.dtype), self._state_spec.quantities
        )
        zeros = [tf.zeros(v.shape, v.dtype) for v in self._variables]
        return _LoopState(
            quantities._replace(seed=seed_state),
            self._estimator.initial_state(zeros),
        )

    def _build_optimizer(self):
        """Creates the optimizer's slots now: they cannot be made inside `tf.cond`."""
        optimizer = self._optimizer
        if getattr(optimizer, "built", False):
            return
        if hasattr(optimizer, "build"):
            optimizer.build(self._variables)
        elif hasattr(optimizer, "_create_all_weights"):  # legacy tf_keras
            optimizer._create_all_weights(self._variables)

    def run(self, progress, checkpoint_dir, checkpoint_every, fingerprint):
        """Runs the fit, resuming from `checkpoint_dir` if it holds a checkpoint.

        Returns:
          The trace: the stacked values of `trace_fn`, `num_steps` long.
        """
        self._progress = progress
        self._every = checkpoint_every
        seed_state = self._initial_seed_state(checkpoint_dir)
        self._trace_specs(seed_state)
        self._build_optimizer()
        # A fresh partial per fit: TF's retracing warning keys on the code
        # object, and every fit traces anew.
        self._steps_fn = tf.function(
            functools.partial(self._steps),
            autograph=False,
            jit_compile=(
                self._jit_compile and self._dataset is None and not self._several
            )
            or None,
        )
        self._training_step = self._make_training_step()
        if self._dataset is not None and not self._several:
            self._iterator = iter(self._dataset)  # saved with the checkpoints
        self._store = self._open_store(checkpoint_dir, fingerprint)
        steps_done, state, traces = self._restore(checkpoint_dir)
        if self._dataset is not None and self._several:
            self._iterator = distributed.replica_batches(
                self._strategy, self._dataset, steps_done
            )
        if state is None:
            state = self._fresh_state(seed_state)
        if progress is not None:
            progress.start(steps_done)
        steps_done = self._run_chunks(state, steps_done, traces)
        if progress is not None:
            progress.close()
        return self._padded(_concat(traces), steps_done)

    def _make_training_step(self):
        """The step every iteration runs: on this device, or on every replica
        (XLA then compiles each replica's loss and gradients)."""
        loss_fn = functools.partial(_without_parameters, self._loss_fn)
        if self._strategy is None:
            return TrainingStep(
                loss_fn, self._optimizer, self._variables, skip_non_finite=True
            )
        return distributed.ReplicaTrainingStep(
            self._strategy,
            self._estimator,
            loss_fn,
            self._optimizer,
            self._variables,
            jit_compile=self._jit_compile and self._several,
        )

    def _initial_seed_state(self, checkpoint_dir):
        """`sanitize_seed(seed, salt='minimize')`, as `tfp.math.minimize` starts."""
        self._seed_is_none = self._seed is None and checkpoint_dir is None
        if self._seed_is_none:
            return tf.constant(-1, tf.int32)
        # With checkpoints and no seed, a random seed is drawn and saved so a
        # resumed fit continues the same sample stream.
        return tfp.random.sanitize_seed(self._seed, salt="minimize")

    def _open_store(self, checkpoint_dir, fingerprint):
        if checkpoint_dir is None:
            return None
        return _CheckpointStore(
            checkpoint_dir,
            fingerprint,
            self._variables,
            self._optimizer,
            self._state_spec,
            self._trace_spec,
            iterator=self._iterator,
            write_directory=distributed.checkpoint_write_dir(
                self._strategy, checkpoint_dir
            ),
        )

    def _restore(self, checkpoint_dir):
        """`(steps_done, state, traces)` of the latest checkpoint, or a fresh start."""
        restored = None if self._store is None else self._store.restore()
        if restored is None:
            return 0, None, []
        steps_done, state, trace = restored
        if steps_done > self._num_steps:
            raise ValueError(
                f"The checkpoint in {checkpoint_dir!r} is at step "
                f"{steps_done}, beyond `num_steps={self._num_steps}`."
            )
        return steps_done, state, [trace]

    def _run_chunks(self, state, steps_done, traces):
        """The steps, a chunk at a time; appends to `traces`.

        Returns:
          The number of steps done (fewer than `num_steps` once converged).
        """
        length = self._first_chunk_length()
        while steps_done < self._num_steps and not self._converged(state, steps_done):
            length = self._chunk_length(steps_done, length)
            started = time.perf_counter()
            steps_run, state, finite, trace = self._steps_fn(
                state,
                tf.constant(steps_done, tf.int32),
                tf.constant(length),
                self._iterator,
            )
            steps_run = int(steps_run)
            if not bool(finite):
                self._raise_not_finite(steps_done + steps_run - 1, state)
            traces.append(tf.nest.map_structure(lambda t, n=steps_run: t[:n], trace))
            steps_done += steps_run
            self._after_chunk(steps_done, state, traces)
            length = self._next_length(length, time.perf_counter() - started)
        return steps_done

    def _first_chunk_length(self):
        # The first call also compiles; a short first chunk shows progress soon.
        return self._max_chunk if self._progress is None else min(10, self._max_chunk)

    def _next_length(self, length, seconds):
        if self._progress is None:
            return self._max_chunk
        wanted = int(length * _SECONDS_PER_CHUNK / max(seconds, 1e-6))
        return max(1, min(self._max_chunk, wanted, 4 * length))

    def _chunk_length(self, steps_done, length):
        """Steps in the next chunk; chunks end on checkpoint boundaries."""
        length = min(length, self._num_steps - steps_done)
        if self._store is not None:
            length = min(length, self._every - steps_done % self._every)
        return length

    def _padded(self, result, steps_done):
        """Pads a converged fit's trace with its last values, as tfp does."""
        if steps_done == self._num_steps:
            return result
        pad = self._num_steps - steps_done
        return tf.nest.map_structure(
            lambda t: tf.concat([t, tf.repeat(t[-1:], pad, axis=0)], axis=0), result
        )

    def _converged(self, state, steps_done):
        return (
            self._criterion is not None
            and steps_done > 0
            and bool(tf.reduce_all(state.quantities.has_converged))
        )

    def _after_chunk(self, steps_done, state, traces):
        """Host work between chunks: the progress line and a due checkpoint."""
        if self._progress is not None:
            self._progress.update(steps_done, state.quantities.loss)
        if self._store is not None and (
            steps_done % self._every == 0
            or steps_done == self._num_steps
            or self._converged(state, steps_done)
        ):
            traces[:] = [_concat(traces)]
            self._store.save(steps_done, state, traces[0])

    def _raise_not_finite(self, step, state):
        """`NonFiniteLossError` naming the step and what was not finite in it."""
        state = state.quantities
        parts = []
        if not np.all(np.isfinite(state.loss)):
            parts.append("the loss")
        bad = [
            v.name
            for v, g in zip(self._variables, state.gradients, strict=True)
            if not np.all(np.isfinite(g))
        ]
        if bad:
            parts.append("the gradient of " + ", ".join(repr(n) for n in bad))
        kept = (
            "the initial values" if step == 0 else f"the values after step {step - 1}"
        )
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


def _unique(variables):
    """The variables, each once, in order of first appearance.

    A trace that creates variables (a Keras layer built on first use) watches
    each of them twice.
    """
    seen, unique = set(), []
    for v in variables:
        if v.ref() not in seen:
            seen.add(v.ref())
            unique.append(v)
    return unique


def _checked_variables(variables):
    if not variables:
        raise ValueError(
            "Nothing to train: the loss reads no trainable variable and "
            "`trainable_variables` is empty or None. Build the surrogate "
            "from `tf.Variable`s (or `tfp.util.TransformedVariable`s), or "
            "pass `trainable_variables`."
        )
    return variables


def _concat(traces):
    if len(traces) == 1:
        return traces[0]
    return tf.nest.map_structure(lambda *ts: tf.concat(ts, axis=0), *traces)
