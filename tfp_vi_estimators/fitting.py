"""`fit_surrogate_posterior`: `tfp.vi`'s fitting loop with correct gradients.

The same parameters, defaults, seed splitting and loss trace as
`tfp.vi.fit_surrogate_posterior`, minimizing this package's
`monte_carlo_variational_loss`, plus what a long fit needs: a choice of
gradient estimator, a progress line, resumable checkpoints, and a clear stop at
the first non-finite loss or gradient.

The optimization runs in compiled chunks of steps (`tf.function`, with XLA
when `jit_compile=True`); between chunks, on the host, the progress line is
updated, a checkpoint may be written and the non-finite flag is read. Each step
splits the seed exactly as `tfp.math.minimize` does, so the chunking changes
nothing in the result:

```none
state[0]                  = sanitize_seed(seed, salt='minimize')
seed[t], state[t + 1]     = split_seed(state[t], n=2)      # t = 0, 1, ...
loss[t], grads[t]         = value_and_gradient(loss_fn(seed=seed[t]))
```
"""

import functools
import json
import numbers
import os
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import samplers

from tfp_vi_estimators import _validation
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.gradient_estimators import (
    GradientEstimators,
    resolve_gradient_estimator,
)
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__all__ = [
    "CorruptCheckpointError",
    "NonFiniteLossError",
    "fit_surrogate_posterior",
]

_Traceable = tfp.math.MinimizeTraceableQuantities


def _trace_loss(traceable_quantities):
    return traceable_quantities.loss


class NonFiniteLossError(FloatingPointError):
    """A fit met a non-finite loss or gradient; `step` is the failing step."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class CorruptCheckpointError(RuntimeError):
    """A checkpoint could not be read; nothing was restored from it."""


def fit_surrogate_posterior(
    target_log_prob_fn,
    surrogate_posterior,
    optimizer,
    num_steps,
    convergence_criterion=None,
    trace_fn=_trace_loss,
    discrepancy_fn=kl_reverse,
    sample_size=1,
    importance_sample_size=1,
    trainable_variables=None,
    jit_compile=None,
    seed=None,
    name="fit_surrogate_posterior",
    *,
    gradient_estimator=None,
    stopped_surrogate_posterior=None,
    progress=None,
    checkpoint_dir=None,
    checkpoint_every=None,
):
    """Fits a surrogate posterior by minimizing a Monte Carlo variational loss.

    A drop-in for `tfp.vi.fit_surrogate_posterior`: the positional parameters,
    their defaults and, for the same `seed`, the loss trace are the same. Each
    of `num_steps` optimizer steps minimizes

    ```none
    loss(phi) = 1/S sum_s f(log 1/K sum_k p(z[s, k]) / q_phi(z[s, k])),
    z[s, k] ~ q_phi
    ```

    (the negative ELBO for `f = kl_reverse`, K = 1; the negative IWAE bound for
    K > 1) with the gradient of `gradient_estimator`, using
    `tfp_vi_estimators.monte_carlo_variational_loss`.

    Long fits can be made resumable: with `checkpoint_dir`, the variables, the
    optimizer's state, the step counter, the seed state and the trace so far
    are saved every `checkpoint_every` steps. Calling the function again with
    the same arguments (after a crash, a pre-emption, a `kill -9`) resumes from
    the latest checkpoint, and the final variables and trace equal those of an
    uninterrupted fit. A checkpoint carries a fingerprint of the arguments that
    determine the result; one written with different arguments is refused.
    `num_steps`, `jit_compile`, `progress`, `checkpoint_every` and `name` are
    not in the fingerprint, so a finished fit can be extended by calling again
    with a larger `num_steps`.

    A step whose loss or gradient is not finite is not applied: the fit stops
    with `NonFiniteLossError` naming the step, and the variables keep the
    values of the last finite step.

    Args:
      target_log_prob_fn: Python callable returning the unnormalized target
        log-density of the surrogate's samples (called as `tfp.vi` calls it).
      surrogate_posterior: `tfp.distributions.Distribution` with trainable
        variables.
      optimizer: optimizer with `apply_gradients` (Keras 3, `tf_keras`, or
        legacy `tf_keras` optimizers).
      num_steps: Python integer, the number of optimizer steps.
      convergence_criterion: optional
        `tfp.optimizer.convergence_criteria.ConvergenceCriterion`; once it
        reports convergence the remaining steps are skipped and the trace is
        padded with the last values, as in `tfp.math.minimize`.
        Default value: `None`.
      trace_fn: callable taking `tfp.math.MinimizeTraceableQuantities` and
        returning the (structure of) tensors to trace at every step.
        Default value: trace the loss.
      discrepancy_fn: Csiszar function in log space. Default value:
        `kl_reverse`.
      sample_size: positive integer, the number of Monte Carlo draws per step.
        Default value: `1`.
      importance_sample_size: positive integer, particles per draw for the
        importance-weighted bound. Default value: `1`.
      trainable_variables: optional list of `tf.Variable`s to train. When
        `None`, every trainable variable the loss reads is trained, as in
        `tfp.vi`.
      jit_compile: if `True`, compile the steps with XLA. Default value:
        `None` (no XLA).
      seed: PRNG seed; see `tfp.random.sanitize_seed`. Default value: `None`.
      name: name scope for the ops. Default value: `'fit_surrogate_posterior'`.
      gradient_estimator: keyword-only; a `GradientEstimators` member, a
        `tfp.vi.GradientEstimators` member, or an estimator object from
        `tfp_vi_estimators.estimators`. Default value: `None`, meaning
        REPARAMETERIZATION, which `tfp.vi.fit_surrogate_posterior` forces.
      stopped_surrogate_posterior: keyword-only; optional copy of the
        surrogate with stopped parameters for DOUBLY_REPARAMETERIZED; built
        automatically when `None`.
      progress: keyword-only; `True` to print the step, loss and steps per
        second while fitting (a refreshed line on a terminal, periodic lines
        otherwise), `False` for silence. Default value: `None`, meaning on
        when standard error is a terminal and the `CI` environment variable
        is unset.
      checkpoint_dir: keyword-only; directory for resumable checkpoints.
        Default value: `None` (no checkpoints).
      checkpoint_every: keyword-only; positive integer, steps between
        checkpoints (the last step is always saved). Default value: `None`,
        meaning `max(1, num_steps // 10)` when `checkpoint_dir` is set.

    Returns:
      results: the stacked values of `trace_fn`, each with a leading dimension
        of `num_steps` (a `Tensor` of losses by default).

    Raises:
      TypeError: for an argument of the wrong kind, before any tensor work.
      ValueError: for an argument out of range, for `checkpoint_every` without
        `checkpoint_dir`, for checkpoints or progress requested inside a
        `tf.function`, or for a checkpoint written with different arguments or
        further than `num_steps`.
      NonFiniteLossError: a `FloatingPointError` naming the first step whose
        loss or gradient is not finite.
      CorruptCheckpointError: if the latest checkpoint cannot be read; it is
        not loaded.

    #### References

    [1] Diederik P. Kingma and Max Welling. Auto-encoding variational Bayes.
        ICLR 2014. arXiv:1312.6114.
    [2] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison.
        Doubly reparameterized gradient estimators for Monte Carlo objectives.
        ICLR 2019. arXiv:1810.04152.
    """
    _validation.check_callable("target_log_prob_fn", target_log_prob_fn)
    _validation.check_distribution("surrogate_posterior", surrogate_posterior)
    if not hasattr(optimizer, "apply_gradients"):
        raise TypeError(
            "`optimizer` must be an optimizer with `apply_gradients` (for example "
            f"`keras.optimizers.Adam()`); got {optimizer!r} of type "
            f"{type(optimizer).__name__}."
        )
    num_steps = _static_positive_integer("num_steps", num_steps)
    if convergence_criterion is not None and not (
        hasattr(convergence_criterion, "bootstrap")
        and hasattr(convergence_criterion, "one_step")
    ):
        raise TypeError(
            "`convergence_criterion` must be None or a "
            "tfp.optimizer.convergence_criteria.ConvergenceCriterion; got "
            f"{convergence_criterion!r} of type {type(convergence_criterion).__name__}."
        )
    _validation.check_callable("trace_fn", trace_fn)
    _validation.check_callable("discrepancy_fn", discrepancy_fn)
    _validation.check_positive_integer("sample_size", sample_size)
    _validation.check_positive_integer("importance_sample_size", importance_sample_size)
    _check_trainable_variables(trainable_variables)
    if jit_compile is not None and not isinstance(jit_compile, (bool, np.bool_)):
        raise TypeError(f"`jit_compile` must be None or a bool; got {jit_compile!r}.")
    _validation.check_seed(seed)
    _validation.check_name(name)
    _validation.check_stopped_surrogate(
        surrogate_posterior, stopped_surrogate_posterior
    )
    estimator = resolve_gradient_estimator(
        GradientEstimators.REPARAMETERIZATION
        if gradient_estimator is None
        else gradient_estimator,
        None,
        surrogate_posterior,
    )
    _validation.check_positive_integer(
        "importance_sample_size",
        importance_sample_size,
        minimum=estimator.min_importance_sample_size,
    )
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"`progress` must be None or a bool; got {progress!r}.")
    if checkpoint_dir is not None and not isinstance(
        checkpoint_dir, (str, os.PathLike)
    ):
        raise TypeError(
            "`checkpoint_dir` must be None or a path (str or os.PathLike); got "
            f"{checkpoint_dir!r} of type {type(checkpoint_dir).__name__}."
        )
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
        checkpoint_every = _static_positive_integer(
            "checkpoint_every", checkpoint_every
        )
    elif checkpoint_dir is not None:
        checkpoint_every = max(1, num_steps // 10)

    def loss_fn(seed=None):
        return monte_carlo_variational_loss(
            target_log_prob_fn,
            surrogate_posterior,
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=discrepancy_fn,
            gradient_estimator=estimator,
            stopped_surrogate_posterior=stopped_surrogate_posterior,
            seed=seed,
        )

    if not tf.executing_eagerly():
        # Inside a tf.function there is no host to return to between steps:
        # run tfp's loop unchanged, with this package's loss.
        if checkpoint_dir is not None or progress:
            raise ValueError(
                "`checkpoint_dir` and `progress` need eager execution; call "
                "`fit_surrogate_posterior` outside `tf.function` (pass "
                "`jit_compile=True` to compile the steps)."
            )
        return tfp.math.minimize(
            loss_fn,
            num_steps=num_steps,
            optimizer=optimizer,
            convergence_criterion=convergence_criterion,
            trace_fn=trace_fn,
            trainable_variables=trainable_variables,
            jit_compile=jit_compile,
            seed=seed,
            name=name,
        )

    if progress is None:
        progress = "CI" not in os.environ and _isatty(sys.stderr)
    fingerprint = None
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(
            target_log_prob_fn=target_log_prob_fn,
            surrogate_posterior=surrogate_posterior,
            optimizer=optimizer,
            convergence_criterion=convergence_criterion,
            trace_fn=trace_fn,
            discrepancy_fn=discrepancy_fn,
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            estimator=estimator,
            seed=seed,
        )
    with tf.name_scope(name):
        loop = _FitLoop(
            loss_fn,
            optimizer,
            num_steps,
            convergence_criterion,
            trace_fn,
            trainable_variables,
            bool(jit_compile),
            seed,
            chunk_size=_chunk_size(num_steps, progress, checkpoint_every),
        )
        return loop.run(
            progress=_Progress(num_steps, sys.stderr) if progress else None,
            checkpoint_dir=None
            if checkpoint_dir is None
            else os.fspath(checkpoint_dir),
            checkpoint_every=checkpoint_every,
            fingerprint=fingerprint,
        )


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
        seed, next_seed = samplers.split_seed(seed_state, n=2)
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
            return list(self._trainable_variables)
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
        return found

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
        self._seed_is_none = self._seed is None and checkpoint_dir is None
        if self._seed_is_none:
            seed_state = tf.constant(-1, tf.int32)
        else:
            # With checkpoints and no seed, a random seed is drawn and saved so a
            # resumed fit continues the same sample stream.
            seed_state = samplers.sanitize_seed(self._seed, salt="minimize")
        self._variables = self._discover_variables(seed_state)
        self._build_optimizer()

        first_step = self._compile(self._first_step)
        concrete = first_step.get_concrete_function(seed_state)
        state_spec, trace_spec, _ = concrete.structured_outputs
        self._trace_spec = trace_spec
        chunk = self._compile(self._chunk)

        store = None
        traces = []
        steps_done = 0
        state = None
        if checkpoint_dir is not None:
            store = _CheckpointStore(
                checkpoint_dir,
                fingerprint,
                self._variables,
                self._optimizer,
                state_spec,
                trace_spec,
            )
            restored = store.restore()
            if restored is not None:
                steps_done, state, trace = restored
                if steps_done > self._num_steps:
                    raise ValueError(
                        f"The checkpoint in {checkpoint_dir!r} is at step "
                        f"{steps_done}, beyond `num_steps={self._num_steps}`."
                    )
                traces.append(trace)
        if progress is not None:
            progress.start(steps_done)

        if state is None:
            state, trace, finite = first_step(seed_state)
            self._raise_if_not_finite(0, finite)
            traces.append(tf.nest.map_structure(lambda t: t[tf.newaxis], trace))
            steps_done = 1
            self._after_chunk(
                steps_done, state, traces, progress, store, checkpoint_every
            )

        while steps_done < self._num_steps and not self._converged(state):
            num_active = min(self._chunk_size, self._num_steps - steps_done)
            if store is not None:  # end chunks on checkpoint boundaries
                num_active = min(
                    num_active, checkpoint_every - steps_done % checkpoint_every
                )
            state, trace, stopped, bad_index, bad_flags = chunk(
                state, tf.constant(steps_done, tf.int32), tf.constant(num_active)
            )
            if bool(stopped):
                self._raise_if_not_finite(steps_done + int(bad_index), bad_flags)
            if self._converged(state):
                num_active = int(state.step) - steps_done + 1
            traces.append(tf.nest.map_structure(lambda t, n=num_active: t[:n], trace))
            steps_done += num_active
            self._after_chunk(
                steps_done, state, traces, progress, store, checkpoint_every
            )

        if progress is not None:
            progress.close()
        result = _concat(traces)
        if steps_done < self._num_steps:  # converged: pad as tfp.math.minimize does
            pad = self._num_steps - steps_done
            result = tf.nest.map_structure(
                lambda t: tf.concat([t, tf.repeat(t[-1:], pad, axis=0)], axis=0), result
            )
        return result

    def _converged(self, state):
        return self._criterion is not None and bool(tf.reduce_all(state.has_converged))

    def _after_chunk(self, steps_done, state, traces, progress, store, every):
        if progress is not None:
            progress.update(steps_done, state.loss)
        if store is not None and (
            steps_done % every == 0
            or steps_done == self._num_steps
            or self._converged(state)
        ):
            traces[:] = [_concat(traces)]
            store.save(steps_done, state, traces[0])

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


class _CheckpointStore:
    """Resumable state in a `tf.train.CheckpointManager` directory."""

    _PREFIX = "fit"

    def __init__(
        self, directory, fingerprint, variables, optimizer, state_spec, trace_spec
    ):
        self._directory = directory
        self._fingerprint = fingerprint
        self._state_spec = state_spec
        self._trace_spec = trace_spec
        self._steps_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._fingerprint_variable = tf.Variable(fingerprint, trainable=False)
        self._state = [
            tf.Variable(tf.zeros(s.shape, s.dtype), trainable=False)
            for s in tf.nest.flatten(state_spec)
        ]
        self._trace = [
            tf.Variable(
                tf.zeros([0] + s.shape.as_list(), s.dtype),
                shape=tf.TensorShape([None]).concatenate(s.shape),
                trainable=False,
            )
            for s in tf.nest.flatten(trace_spec)
        ]
        optimizer_variables = optimizer.variables
        if callable(optimizer_variables):  # legacy tf_keras
            optimizer_variables = optimizer_variables()
        self._checkpoint = tf.train.Checkpoint(
            variables=list(variables),
            optimizer_variables=list(optimizer_variables),
            steps_done=self._steps_done,
            fingerprint=self._fingerprint_variable,
            state=self._state,
            trace=self._trace,
        )
        self._manager = None

    def _open(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self._checkpoint,
                self._directory,
                max_to_keep=2,
                checkpoint_name=self._PREFIX,
            )
        return self._manager

    def save(self, steps_done, state, trace):
        self._steps_done.assign(steps_done)
        for variable, value in zip(self._state, tf.nest.flatten(state), strict=True):
            variable.assign(value)
        for variable, value in zip(self._trace, tf.nest.flatten(trace), strict=True):
            variable.assign(value)
        self._open().save(checkpoint_number=steps_done)

    def restore(self):
        """`(steps_done, state, trace)` from the latest checkpoint, or `None`."""
        try:
            path = tf.train.latest_checkpoint(self._directory)
        except Exception as e:  # noqa: BLE001 - any unreadable index is corrupt
            raise CorruptCheckpointError(
                f"The checkpoint index in {self._directory!r} cannot be read ({e}); "
                "nothing was restored. Delete the directory or use another "
                "`checkpoint_dir`."
            ) from e
        if path is None:
            return None
        try:
            reader = tf.train.load_checkpoint(path)
            # Reading every tensor checks every checksum before anything is assigned.
            values = {
                k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            }
        except Exception as e:  # noqa: BLE001
            raise CorruptCheckpointError(
                f"The checkpoint {path!r} is corrupt ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
                "nothing was restored. Delete it (or the directory) to start over."
            ) from e
        key = next((k for k in values if k.startswith("fingerprint/")), None)
        if key is None:
            raise ValueError(
                f"The checkpoint {path!r} was not written by fit_surrogate_posterior "
                "(it has no argument fingerprint); use another `checkpoint_dir`."
            )
        saved = values[key]
        saved = saved.decode() if isinstance(saved, bytes) else str(saved)
        if saved != self._fingerprint:
            raise ValueError(
                f"The checkpoint {path!r} was written by a fit with different "
                f"arguments: {_describe_difference(saved, self._fingerprint)}. "
                "Pass the same arguments to resume, or use another "
                "`checkpoint_dir` to start a new fit."
            )
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001
            raise CorruptCheckpointError(
                f"The checkpoint {path!r} does not match this fit's variables "
                f"({type(e).__name__}: {e})."
            ) from e
        state = tf.nest.pack_sequence_as(
            self._state_spec, [tf.convert_to_tensor(v) for v in self._state]
        )
        trace = tf.nest.pack_sequence_as(
            self._trace_spec, [tf.convert_to_tensor(v) for v in self._trace]
        )
        return int(self._steps_done.numpy()), state, trace


def _describe_difference(saved, current):
    try:
        saved, current = json.loads(saved), json.loads(current)
    except ValueError:
        return "the fingerprint differs"
    keys = sorted(set(saved) | set(current))
    diffs = [
        f"`{k}` was {saved.get(k)!r}, now {current.get(k)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]
    return "; ".join(diffs) or "the fingerprint differs"


def _fingerprint(
    *,
    target_log_prob_fn,
    surrogate_posterior,
    optimizer,
    convergence_criterion,
    trace_fn,
    discrepancy_fn,
    sample_size,
    importance_sample_size,
    estimator,
    seed,
):
    """A JSON description of the arguments that determine a fit's result."""
    config = {}
    if hasattr(optimizer, "get_config"):
        config = {k: v for k, v in optimizer.get_config().items() if k != "name"}
    variables = [
        [v.name, v.shape.as_list(), v.dtype.name]
        for v in surrogate_posterior.trainable_variables
    ]
    description = {
        "target_log_prob_fn": _qualified_name(target_log_prob_fn),
        "surrogate_posterior": (
            f"{type(surrogate_posterior).__name__} event_shape="
            f"{surrogate_posterior.event_shape} batch_shape="
            f"{surrogate_posterior.batch_shape}"
        ),
        "surrogate_variables": variables,
        "optimizer": f"{type(optimizer).__name__} "
        + json.dumps(_describe(config), sort_keys=True),
        "convergence_criterion": None
        if convergence_criterion is None
        else type(convergence_criterion).__name__,
        "trace_fn": _qualified_name(trace_fn),
        "discrepancy_fn": _qualified_name(discrepancy_fn),
        "sample_size": _plain(sample_size),
        "importance_sample_size": _plain(importance_sample_size),
        "gradient_estimator": f"{estimator.name} "
        + json.dumps(_describe(vars(estimator)), sort_keys=True),
        "seed": None if seed is None else np.asarray(seed).tolist(),
    }
    return json.dumps(description, sort_keys=True, default=str)


def _describe(value):
    """A process-independent JSON-able description (no object addresses)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Number):
        return float(value) if isinstance(value, numbers.Real) else str(value)
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        return np.asarray(value).tolist()
    if callable(value) and hasattr(value, "__qualname__"):
        return _qualified_name(value)
    return type(value).__qualname__


def _qualified_name(fn):
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def _plain(value):
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        return np.asarray(value).tolist()
    return value


def _static_positive_integer(name, value):
    _validation.check_positive_integer(name, value)
    if isinstance(value, numbers.Integral):
        return int(value)
    static = tf.get_static_value(value)
    if static is None:
        raise ValueError(f"`{name}` must be known statically (a Python integer).")
    return int(static)


def _check_trainable_variables(trainable_variables):
    if trainable_variables is None:
        return
    if isinstance(trainable_variables, (str, bytes)) or not hasattr(
        trainable_variables, "__iter__"
    ):
        raise TypeError(
            "`trainable_variables` must be None or a list of tf.Variables; got "
            f"{trainable_variables!r}."
        )
    for v in tf.nest.flatten(list(trainable_variables)):
        if not isinstance(v, tf.Variable):
            raise TypeError(
                "`trainable_variables` must contain only tf.Variables; got "
                f"{v!r} of type {type(v).__name__}."
            )


def _chunk_size(num_steps, progress, checkpoint_every):
    size = max(1, num_steps - 1)
    if progress:
        size = min(size, max(1, num_steps // 100))
    if checkpoint_every is not None:
        size = min(size, checkpoint_every)
    return size


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """The step, loss and steps per second: one refreshed line on a terminal."""

    def __init__(self, num_steps, stream):
        self._num_steps = num_steps
        self._stream = stream
        self._tty = _isatty(stream)
        self._last_print = 0.0

    def start(self, steps_done):
        self._start_step = steps_done
        self._start_time = time.perf_counter()

    def update(self, steps_done, loss):
        now = time.perf_counter()
        done = steps_done == self._num_steps
        if not self._tty and not done and now - self._last_print < 1.0:
            return
        self._last_print = now
        rate = (steps_done - self._start_step) / max(now - self._start_time, 1e-9)
        loss = float(np.mean(loss))
        width = len(str(self._num_steps))
        line = (
            f"step {steps_done:>{width}}/{self._num_steps}  loss {loss:.6g}  "
            f"{rate:.1f} steps/s"
        )
        if self._tty:
            self._stream.write("\r" + line.ljust(60))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self):
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
