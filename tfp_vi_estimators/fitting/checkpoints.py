"""Resumable checkpoints: the store, the argument fingerprint, corruption checks."""

import json
import numbers
import os

import numpy as np
import tensorflow as tf


class CorruptCheckpointError(RuntimeError):
    """A checkpoint could not be read; nothing was restored from it."""


class _CheckpointStore:
    """Resumable state in a `tf.train.CheckpointManager` directory."""

    _PREFIX = "fit"

    def __init__(
        self,
        directory,
        fingerprint,
        variables,
        optimizer,
        state_spec,
        trace_spec,
        iterator=None,
        write_directory=None,
    ):
        self._directory = directory
        # Under MultiWorkerMirroredStrategy every worker saves; a non-chief
        # writes to a directory of its own, removed after each save.
        self._write_directory = write_directory or directory
        self._fingerprint = fingerprint
        self._state_spec = state_spec
        self._trace_spec = trace_spec
        self._steps_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._fingerprint_variable = tf.Variable(
            _stored_fingerprint(fingerprint), trainable=False
        )
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
        # A minibatched fit also saves its data iterator's position.
        data = {} if iterator is None else {"data_iterator": iterator}
        self._checkpoint = tf.train.Checkpoint(
            variables=list(variables),
            optimizer_variables=list(optimizer_variables),
            steps_done=self._steps_done,
            fingerprint=self._fingerprint_variable,
            state=self._state,
            trace=self._trace,
            **data,
        )
        self._manager = None

    def _open(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self._checkpoint,
                self._write_directory,
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
        if os.path.normpath(self._write_directory) != os.path.normpath(self._directory):
            tf.io.gfile.rmtree(self._write_directory)
            self._manager = None

    def restore(self):
        """`(steps_done, state, trace)` from the latest checkpoint, or `None`."""
        path = self._latest_path()
        if path is None:
            return None
        self._check_fingerprint(path, _read_every_tensor(path))
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

    def _latest_path(self):
        try:
            return tf.train.latest_checkpoint(self._directory)
        except Exception as e:  # noqa: BLE001 - any unreadable index is corrupt
            raise CorruptCheckpointError(
                f"The checkpoint index in {self._directory!r} cannot be read ({e}); "
                "nothing was restored. Delete the directory or use another "
                "`checkpoint_dir`."
            ) from e

    def _check_fingerprint(self, path, values):
        """Refuses a checkpoint written by another fit or with other arguments."""
        key = next((k for k in values if k.startswith("fingerprint/")), None)
        if key is None:
            raise ValueError(
                f"The checkpoint {path!r} was not written by fit_surrogate_posterior "
                "(it has no argument fingerprint); use another `checkpoint_dir`."
            )
        saved = _read_fingerprint(values[key])
        if saved != self._fingerprint:
            raise ValueError(
                f"The checkpoint {path!r} was written by a fit with different "
                f"arguments: {_describe_difference(saved, self._fingerprint)}. "
                "Pass the same arguments to resume, or use another "
                "`checkpoint_dir` to start a new fit."
            )


def _stored_fingerprint(fingerprint):
    """The fingerprint as saved: a string, or its bytes as int32 under a strategy.

    MultiWorkerMirroredStrategy broadcasts a variable's initial value from the
    chief, which it cannot do for a string.
    """
    if not tf.distribute.has_strategy():
        return fingerprint
    return np.frombuffer(fingerprint.encode(), np.uint8).astype(np.int32)


def _read_fingerprint(saved):
    if isinstance(saved, np.ndarray) and saved.dtype.kind == "i":
        return saved.astype(np.uint8).tobytes().decode()
    return saved.decode() if isinstance(saved, bytes) else str(saved)


def _read_every_tensor(path):
    """Every tensor of the checkpoint, by key; reading checks every checksum."""
    try:
        reader = tf.train.load_checkpoint(path)
        # A data iterator's state is a variant tensor, which numpy cannot hold;
        # restoring it checks it.
        return {
            k: reader.get_tensor(k)
            for k, dtype in reader.get_variable_to_dtype_map().items()
            if dtype != tf.variant
        }
    except Exception as e:  # noqa: BLE001
        raise CorruptCheckpointError(
            f"The checkpoint {path!r} is corrupt ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
            "nothing was restored. Delete it (or the directory) to start over."
        ) from e


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
    sampling=None,
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
    if sampling is not None:  # iid fits keep their earlier fingerprint
        description["sampling"] = repr(sampling)
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
