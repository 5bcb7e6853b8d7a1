"""The fit loop: compiled chunks of steps, progress and checkpoints in between."""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.fitting.checkpoints import _CheckpointStore

_Traceable = tfp.math.MinimizeTraceableQuantities


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
        chunk_size,
    ):
        self._loss_fn = loss_fn
        self._optimizer = optimizer
        self._num_steps = num_steps
        self._criterion = convergence_criterion
        self._trace_fn = trace_fn
        self._trainable_variables = trainable_variables
        self._jit_compile = jit_compile
        self._seed = seed
        self._chunk_size = chunk_size
        self._variables = None
        # Set by `run`.
        self._progress = self._store = self._every = None
        self._state_spec = self._trace_spec = self._chunk_fn = None
        self._seed_is_none = None

    # Compiled parts.

    def _optimizer_step(self, seed):
        """One step; the update is applied only if the loss and gradients are finite."""
        watch_accessed = self._trainable_variables is None
        with tf.GradientTape(watch_accessed_variables=watch_accessed) as tape:
            for v in self._trainable_variables or []:
                tape.watch(v)
            loss = self._loss_fn(seed=seed)
        variables = tape.watched_variables()
        grads = tape.gradient(loss, variables)
        for v, g in zip(variables, grads, strict=True):
            if g is None:
                raise ValueError(
                    f"The loss has no gradient with respect to the variable "
                    f"{v.name!r}; pass `trainable_variables` without it."
                )
        finite = tf.stack(
            [tf.reduce_all(tf.math.is_finite(loss))]
            + [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
        )

        def apply():
            self._optimizer.apply_gradients(zip(grads, variables, strict=True))
            return [tf.identity(v) for v in variables]

        def keep():
            return [tf.identity(v) for v in variables]

        parameters = tf.cond(tf.reduce_all(finite), apply, keep)
        return loss, grads, parameters, finite

    def _split(self, seed_state):
        if self._seed_is_none:
            return None, seed_state
        seed, next_seed = tfp.random.split_seed(seed_state, n=2)
        return seed, next_seed

    def _first_step(self, seed_state):
        seed, next_seed = self._split(seed_state)
        loss, grads, parameters, finite = self._optimizer_step(seed)
        criterion_state = ()
        if self._criterion is not None:
            criterion_state = self._criterion.bootstrap(loss, grads, parameters)
        state = _Traceable(
            loss=loss,
            gradients=grads,
            parameters=parameters,
            step=tf.constant(0, tf.int32),
            has_converged=tf.zeros(tf.shape(loss), dtype=tf.bool),
            convergence_criterion_state=criterion_state,
            optimizer_state=(),
            seed=next_seed,
        )
        trace = tf.nest.map_structure(tf.convert_to_tensor, self._trace_fn(state))
        return state, trace, finite

    def _later_step(self, previous, step):
        seed, next_seed = self._split(previous.seed)
        loss, grads, parameters, finite = self._optimizer_step(seed)
        has_converged = previous.has_converged
        criterion_state = previous.convergence_criterion_state
        if self._criterion is not None:
            has_converged, criterion_state = self._criterion.one_step(
                step, loss, grads, parameters, criterion_state
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
        return state, finite

    def _chunk(self, state, start, num_active):
        """Runs steps `start .. start + num_active - 1` (at most `chunk_size`).

        Every one of the `chunk_size` iterations writes a trace entry (inactive
        ones repeat the last), so the trace arrays have a static size for XLA.
        """
        size = self._chunk_size
        num_flags = 1 + len(self._variables)
        leaves = tf.nest.flatten(self._trace_spec)
        arrays = [
            tf.TensorArray(leaf.dtype, size=size, element_shape=leaf.shape)
            for leaf in leaves
        ]

        def body(i, state, stopped, bad_index, bad_flags, arrays):
            active = (i < num_active) & ~stopped & ~tf.reduce_all(state.has_converged)
            new_state, finite = tf.cond(
                active,
                lambda: self._later_step(state, start + i),
                lambda: (state, tf.ones([num_flags], tf.bool)),
            )
            ok = tf.reduce_all(finite)
            new_state = tf.cond(ok, lambda: new_state, lambda: state)
            bad_index = tf.where(ok, bad_index, i)
            bad_flags = tf.where(ok, bad_flags, finite)
            trace = tf.nest.flatten(
                tf.nest.map_structure(tf.convert_to_tensor, self._trace_fn(new_state))
            )
            arrays = [a.write(i, t) for a, t in zip(arrays, trace, strict=True)]
            return i + 1, new_state, stopped | ~ok, bad_index, bad_flags, arrays

        _, state, stopped, bad_index, bad_flags, arrays = tf.while_loop(
            lambda i, *_: i < size,
            body,
            (
                tf.constant(0, tf.int32),
                state,
                tf.constant(False),
                tf.constant(-1, tf.int32),
                tf.ones([num_flags], tf.bool),
                arrays,
            ),
            maximum_iterations=size,
        )
        trace = tf.nest.pack_sequence_as(self._trace_spec, [a.stack() for a in arrays])
        return state, trace, stopped, bad_index, bad_flags

    # Host side.

    def _discover_variables(self, seed_state):
        """The variables the steps train, found by tracing the loss once."""
        if self._trainable_variables is not None:
            found = list(self._trainable_variables)
        else:
            found = self._variables_the_loss_reads(seed_state)
        if not found:
            raise ValueError(
                "Nothing to train: the loss reads no trainable variable and "
                "`trainable_variables` is empty or None. Build the surrogate "
                "from `tf.Variable`s (or `tfp.util.TransformedVariable`s), or "
                "pass `trainable_variables`."
            )
        return found

    def _variables_the_loss_reads(self, seed_state):
        found = []

        def loss_only(seed_state):
            seed, _ = self._split(seed_state)
            with tf.GradientTape() as tape:
                self._loss_fn(seed=seed)
            found.extend(tape.watched_variables())
            return tf.constant(0)

        tf.function(
            functools.partial(loss_only), autograph=False
        ).get_concrete_function(seed_state)
        # A trace that creates variables (a Keras layer built on first use)
        # watches each of them twice: keep the first of each, in order.
        unique = {v.ref(): v for v in reversed(found)}
        return [v for v in found if unique.pop(v.ref(), None) is not None]

    def _build_optimizer(self):
        """Creates the optimizer's slots now: they cannot be made inside `tf.cond`."""
        optimizer = self._optimizer
        if getattr(optimizer, "built", False):
            return
        if hasattr(optimizer, "build"):
            optimizer.build(self._variables)
        elif hasattr(optimizer, "_create_all_weights"):  # legacy tf_keras
            optimizer._create_all_weights(self._variables)

    def _compile(self, fn):
        # A fresh partial per fit: TF's retracing warning keys on the code
        # object, and every fit traces anew.
        return tf.function(
            functools.partial(fn),
            autograph=False,
            jit_compile=self._jit_compile or None,
        )

    def run(self, progress, checkpoint_dir, checkpoint_every, fingerprint):
        """Runs the fit, resuming from `checkpoint_dir` if it holds a checkpoint.

        Returns:
          The trace: the stacked values of `trace_fn`, `num_steps` long.
        """
        self._progress = progress
        self._every = checkpoint_every
        seed_state = self._initial_seed_state(checkpoint_dir)
        first_step = self._prepare(seed_state)
        self._store = self._open_store(checkpoint_dir, fingerprint)
        steps_done, state, traces = self._restore(checkpoint_dir)
        if progress is not None:
            progress.start(steps_done)
        if state is None:
            state, traces, steps_done = self._run_first_step(first_step, seed_state)
        steps_done = self._run_chunks(state, steps_done, traces)
        if progress is not None:
            progress.close()
        return self._padded(_concat(traces), steps_done)

    def _initial_seed_state(self, checkpoint_dir):
        """`sanitize_seed(seed, salt='minimize')`, as `tfp.math.minimize` starts."""
        self._seed_is_none = self._seed is None and checkpoint_dir is None
        if self._seed_is_none:
            return tf.constant(-1, tf.int32)
        # With checkpoints and no seed, a random seed is drawn and saved so a
        # resumed fit continues the same sample stream.
        return tfp.random.sanitize_seed(self._seed, salt="minimize")

    def _prepare(self, seed_state):
        """Finds the variables, builds the optimizer, compiles the steps.

        Returns:
          The compiled first step; the chunk of later steps is `self._chunk_fn`.
        """
        self._variables = self._discover_variables(seed_state)
        self._build_optimizer()
        first_step = self._compile(self._first_step)
        concrete = first_step.get_concrete_function(seed_state)
        self._state_spec, self._trace_spec, _ = concrete.structured_outputs
        self._chunk_fn = self._compile(self._chunk)
        return first_step

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

    def _run_first_step(self, first_step, seed_state):
        """Step 0, which also bootstraps the convergence criterion."""
        state, trace, finite = first_step(seed_state)
        self._raise_if_not_finite(0, finite)
        traces = [tf.nest.map_structure(lambda t: t[tf.newaxis], trace)]
        self._after_chunk(1, state, traces)
        return state, traces, 1

    def _run_chunks(self, state, steps_done, traces):
        """The later steps, a chunk at a time; appends to `traces`.

        Returns:
          The number of steps done (fewer than `num_steps` once converged).
        """
        while steps_done < self._num_steps and not self._converged(state):
            num_active = self._chunk_length(steps_done)
            state, trace, stopped, bad_index, bad_flags = self._chunk_fn(
                state, tf.constant(steps_done, tf.int32), tf.constant(num_active)
            )
            if bool(stopped):
                self._raise_if_not_finite(steps_done + int(bad_index), bad_flags)
            if self._converged(state):
                num_active = int(state.step) - steps_done + 1
            traces.append(tf.nest.map_structure(lambda t, n=num_active: t[:n], trace))
            steps_done += num_active
            self._after_chunk(steps_done, state, traces)
        return steps_done

    def _chunk_length(self, steps_done):
        """Steps in the next chunk; chunks end on checkpoint boundaries."""
        num_active = min(self._chunk_size, self._num_steps - steps_done)
        if self._store is not None:
            num_active = min(num_active, self._every - steps_done % self._every)
        return num_active

    def _padded(self, result, steps_done):
        """Pads a converged fit's trace with its last values, as tfp does."""
        if steps_done == self._num_steps:
            return result
        pad = self._num_steps - steps_done
        return tf.nest.map_structure(
            lambda t: tf.concat([t, tf.repeat(t[-1:], pad, axis=0)], axis=0), result
        )

    def _converged(self, state):
        return self._criterion is not None and bool(tf.reduce_all(state.has_converged))

    def _after_chunk(self, steps_done, state, traces):
        """Host work between chunks: the progress line and a due checkpoint."""
        if self._progress is not None:
            self._progress.update(steps_done, state.loss)
        if self._store is not None and (
            steps_done % self._every == 0
            or steps_done == self._num_steps
            or self._converged(state)
        ):
            traces[:] = [_concat(traces)]
            self._store.save(steps_done, state, traces[0])

    def _raise_if_not_finite(self, step, finite):
        finite = np.asarray(finite)
        if finite.all():
            return
        parts = []
        if not finite[0]:
            parts.append("the loss")
        bad = [
            v.name for v, ok in zip(self._variables, finite[1:], strict=True) if not ok
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


def _concat(traces):
    if len(traces) == 1:
        return traces[0]
    return tf.nest.map_structure(lambda *ts: tf.concat(ts, axis=0), *traces)
