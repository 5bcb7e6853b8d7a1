"""`fit_surrogate_posterior` under a `tf.distribute` strategy with several replicas.

Called inside `strategy.scope()` of a `MirroredStrategy` or a
`MultiWorkerMirroredStrategy`, each step of the fit loop runs on every replica
with `strategy.run`:

```none
seed[t]                = split_seed(state[t], n=2)[0]        # as on one replica
seed[t, r]             = stateless_fold_in(seed[t], r)       # r: replica id
loss[t, r], parts[t, r] = loss_and_parts(loss_fn(seed[t, r]))  # S / R draws
loss[t], parts[t]      = all_reduce_mean_r(loss[t, r], parts[t, r])
grads[t], state[t]     = estimator.combine(parts[t], state[t - 1])
apply grads[t] once on every replica if loss[t] and grads[t] are finite
```

`sample_size` is the global number of draws `S`; each of the `R` replicas
draws `S / R`. The mean of the replicas' per-replica estimates is the
estimator over `S` draws, and every replica sees the same all-reduced loss and
gradient, so the non-finite guard decides alike everywhere and every worker
ends with the same variables and trace.

Minibatched data is sharded: each step's global batch of `b` examples is split
by `strategy.experimental_distribute_dataset` into `R` shares of `b / R` (under
`MultiWorkerMirroredStrategy` each worker keeps only its shard), and replica
`r` scales its share by `N / (b / R)`:

```none
loss[t, r] = loss(log p(z) + N / (b / R) sum_{i in B[t, r]} log p(x_i | z))
mean_r loss[t, r]  estimates the full-data loss without bias
```
"""

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from tfp_vi_estimators._internal.gradients import dense_gradient
from tfp_vi_estimators.loss_config import LossOptions
from tfp_vi_estimators.training_step import (
    TrainingStep,
    loss_and_parts,
    replica_seed,
)


@dataclasses.dataclass(frozen=True)
class ReplicaShare:
    """What one replica of a fit computes.

    Attributes:
      strategy: the `tf.distribute` strategy in scope, or `None`.
      options: the `LossOptions` of one replica (`sample_size / R` draws).
      minibatch: the `MinibatchTarget` of one replica (batches of `b / R`, so
        scaled by `N / (b / R)`), or `None` without data.
    """

    strategy: Any
    options: LossOptions
    minibatch: Any


def fit_strategy(options: LossOptions, minibatch: Any, eagerly: bool) -> ReplicaShare:
    """The strategy in scope for an eager fit, and one replica's share of it.

    Args:
      options: the checked `LossOptions` (its `sample_size` is the global one).
      minibatch: the `MinibatchTarget` (its batch size is the global one) or
        `None`.
      eagerly: whether `fit_surrogate_posterior` runs eagerly.

    Returns:
      A `ReplicaShare`: without a strategy (or inside a `tf.function` with one
      replica) `strategy` is `None` and the share is the whole; with one
      replica it is the whole too.

    Raises:
      ValueError: naming `sample_size` (or the dataset's batch size) and the
        replica count when the replicas do not divide it; for a `tf.function`
        under several replicas.
    """
    if not tf.distribute.has_strategy():
        return ReplicaShare(None, options, minibatch)
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if not eagerly:
        if replicas == 1:
            return ReplicaShare(None, options, minibatch)
        raise ValueError(
            f"Under a tf.distribute strategy with {replicas} replicas, call "
            "`fit_surrogate_posterior` eagerly (inside `strategy.scope()`, not "
            "inside a `tf.function`); it compiles its steps itself."
        )
    return ReplicaShare(
        strategy,
        _replica_options(options, replicas),
        _replica_minibatch(minibatch, replicas),
    )


def _replica_minibatch(minibatch, replicas):
    if minibatch is None or replicas == 1:
        return minibatch
    if minibatch.batch_size % replicas:
        raise ValueError(
            f"The dataset's batch size {minibatch.batch_size} is the global "
            f"batch and must be a multiple of the {replicas} replicas of the "
            "tf.distribute strategy in scope (each replica reads `batch_size / "
            "replicas` examples a step)."
        )
    return dataclasses.replace(minibatch, batch_size=minibatch.batch_size // replicas)


def _replica_options(options, replicas):
    """One replica's options: `sample_size / R` draws, checked against the
    estimator's minimum."""
    if replicas == 1:
        return options
    sample_size = options.sample_size
    if not isinstance(sample_size, int) or sample_size % replicas:
        raise ValueError(
            f"`sample_size={sample_size}` is the global number of draws and must "
            f"be a multiple of the {replicas} replicas of the tf.distribute "
            "strategy in scope (each replica draws `sample_size / replicas`)."
        )
    per_replica = sample_size // replicas
    minimum = options.estimator.plan.min_sample_size
    if per_replica < minimum:
        raise ValueError(
            f"`sample_size={sample_size}` over {replicas} replicas is "
            f"{per_replica} draws per replica; {options.estimator.name} needs at "
            f"least {minimum} per replica: pass `sample_size >= "
            f"{minimum * replicas}`."
        )
    return dataclasses.replace(options, sample_size=per_replica)


def replica_batch_spec(strategy: Any, dataset: tf.data.Dataset) -> Any:
    """The spec of one replica's batch: the global one with `b / R` rows."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return dataset.element_spec
    replicas = strategy.num_replicas_in_sync

    def replica_spec(spec):
        shape = [spec.shape[0] // replicas] + spec.shape[1:].as_list()
        return tf.TensorSpec(shape, spec.dtype, spec.name)

    return tf.nest.map_structure(replica_spec, dataset.element_spec)


def replica_batches(strategy: Any, dataset: tf.data.Dataset, steps_done: int) -> Any:
    """An iterator of the replicas' shares of the global batches after `steps_done`.

    `strategy.experimental_distribute_dataset` splits each global batch of `b`
    into `R` batches of `b / R` (under `MultiWorkerMirroredStrategy` each
    worker reads its shard of the data). A distributed iterator cannot be
    checkpointed, so a resumed fit skips the `steps_done` global batches it has
    read: the same batches as an uninterrupted fit when the dataset's order is
    deterministic (a seeded shuffle, which sharding across workers needs too).
    """
    return iter(strategy.experimental_distribute_dataset(dataset.skip(steps_done)))


def distributed_variables(watched: list, candidates: Sequence) -> list:
    """The distributed variables whose local copies a gradient tape watched.

    In cross-replica context a tape watches a distributed variable's local
    component; the optimizer and the replicas need the variable itself: one of
    `candidates` (the surrogate's), or the container TensorFlow records in the
    component (a variable of the target, say).
    """
    owners = {}
    for variable in candidates:
        for component in getattr(variable, "values", (variable,)):
            owners[component.ref()] = variable
    return [owners.get(v.ref(), _container(v)) for v in watched]


def _container(variable):
    if isinstance(variable, tf.distribute.DistributedValues):
        return variable
    container = getattr(variable, "_distributed_container", None)
    return variable if container is None or container() is None else container()


def mean_over_replicas(
    strategy: Any,
    replica_fn: Callable,
    seed: Any,
    batch: Any = None,
    combine: Callable | None = None,
) -> tuple[Any, Any]:
    """`replica_fn(seed[r], batch)` on every replica, all-reduced with MEAN.

    `replica_fn` returns `(loss, parts)`, the gradient parts of the loss's
    estimator (`GradientEstimator.gradient_parts`, linear in the draws, so
    their mean over replicas is the parts of all the draws); `combine(parts)`
    turns the all-reduced parts into `(grads, estimator_state)` on every
    replica alike (default: the parts are the gradients, no state).

    Returns:
      `(per_replica, local)`: the reduced `(loss, grads, estimator_state)` as
      the strategy's per-replica values (for the update) and as this worker's
      first replica's tensors (equal on every replica, for the trace).
    """
    combine = combine or (lambda parts: (parts, ()))

    def step(seed, batch):
        loss, parts = replica_fn(replica_seed(seed), batch)
        loss, parts = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.MEAN, (loss, parts)
        )
        return (loss, *combine(parts))

    per_replica = strategy.run(step, args=(seed, batch))
    local = tf.nest.map_structure(
        lambda v: strategy.experimental_local_results(v)[0], per_replica
    )
    return per_replica, local


def apply_on_every_replica(
    strategy: Any, optimizer: Any, grads: Any, variables: list
) -> tf.Tensor:
    """Applies the all-reduced mean `grads` once per step on every replica.

    Keras optimizers sum the gradients over replicas in `apply_gradients`
    (after clipping each replica's, for `clipnorm` and the like). Replica 0
    passes the mean and the others zeros, so the sum is the mean exactly, for
    any replica count, and clipping acts on the mean gradient as in one
    process (passing `mean / R` from each replica would clip each share: an
    effective clip norm R times too large). A Keras 3 optimizer cannot apply
    in cross-replica context inside `strategy.scope()` (it asks for a
    `merge_call` there, except under XLA on GPUs), so the optimizer's
    all-reduce stays: a second one per step.
    """

    def apply(grads):
        first = tf.equal(
            tf.distribute.get_replica_context().replica_id_in_sync_group, 0
        )
        shares = [tf.where(first, g, tf.zeros_like(g)) for g in grads]
        optimizer.apply_gradients(zip(shares, variables, strict=True))

    strategy.run(apply, args=(grads,))
    return tf.constant(True)


def checkpoint_write_dir(strategy: Any, checkpoint_dir: str | None) -> str | None:
    """Where this worker writes checkpoints: the chief `checkpoint_dir`, others
    a temporary directory of their own (every worker saves, as tf.distribute
    asks, and only the chief's checkpoint is kept)."""
    if strategy is None or strategy.extended.should_checkpoint:
        return checkpoint_dir
    task_id = strategy.cluster_resolver.task_id
    return os.path.join(checkpoint_dir, f".worker-{task_id}-tmp")


class ReplicaTrainingStep(TrainingStep):
    """`TrainingStep` on every replica: the parts all-reduced, the update once.

    Each replica evaluates its share of the loss and its estimator's gradient
    parts (`mean_over_replicas`, XLA-compiled per replica with
    `jit_compile`); the all-reduced parts are combined alike on every
    replica, and the mean gradient is applied once (`apply_on_every_replica`).
    A step whose loss or gradients are not finite changes nothing.

    Args:
      strategy: the `tf.distribute` strategy.
      estimator: the loss's `GradientEstimator` (it combines the reduced parts
        outside the replicas' loss).
      loss_fn, optimizer, variables: as for `TrainingStep` (a Keras-style
        optimizer and the distributed variables).
      jit_compile: compile each replica's loss and gradient parts with XLA.
    """

    def __init__(
        self, strategy, estimator, loss_fn, optimizer, variables, *, jit_compile
    ):
        super().__init__(loss_fn, optimizer, variables, skip_non_finite=True)
        self._strategy = strategy
        self._estimator = estimator
        self._replica_fn = self._replica_loss_and_parts
        if jit_compile:
            self._replica_fn = tf.function(
                self._replica_loss_and_parts, autograph=False, jit_compile=True
            )

    def _replica_loss_and_parts(self, seed, batch):
        evaluation, parts = loss_and_parts(
            lambda: self._loss_fn((), seed, batch), self.variables()
        )
        # Every variable needs a gradient: checked at trace time on the
        # gradients' structure (nothing of the probe runs).
        zeros = [tf.zeros(v.shape, v.dtype) for v in self.variables()]
        probe, _ = self._estimator.combine(parts, self._estimator.initial_state(zeros))
        self._check_every_gradient(probe)
        return evaluation.loss, tf.nest.map_structure(dense_gradient, parts)

    def gradients(self, parameters, estimator_state, seed, batch):
        per_replica, (loss, grads, estimator_state) = mean_over_replicas(
            self._strategy,
            self._replica_fn,
            seed,
            batch,
            combine=lambda parts: self._estimator.combine(parts, estimator_state),
        )
        return loss, grads, estimator_state, per_replica[1]

    def _apply_to_variables(self, per_replica_grads):
        apply_on_every_replica(
            self._strategy, self._optimizer, per_replica_grads, self.variables()
        )
