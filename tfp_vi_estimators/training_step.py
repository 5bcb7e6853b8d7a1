"""One training step, `step(state, seed, batch) -> (state, result)`, for every driver.

Every driver runs its steps through `TrainingStep`: the fit loop (compiled
chunks of steps, `fitting/loop.py`), the stateless fit (`fitting/stateless_loop.py`),
the Keras models' `train_step` and their data-free compiled loop
(`keras_models.py`), and, under `tf.distribute`, each replica's share
(`fitting/distributed.py` refines the gradient and the update). So an
estimator that learns across steps (the adaptive score weight of
`estimators.DoublyReparameterized(score_weight='adaptive')`) adapts the same
way in all of them:

```none
evaluation = loss_fn(parameters, seed, batch)        # under a persistent tape
parts      = estimator.gradient_parts(tape, scalar(evaluation.loss), ...)
grads, estimator_state = estimator.combine(parts, estimator_state)
parameters, optimizer_state = update(grads, ...)     # skipped if not finite,
                                                     # when asked
```

The state is a `StepState(parameters, optimizer_state, estimator)`. With a
Keras-style optimizer (`apply_gradients`) the parameters are `tf.Variable`s
updated in place and the state's first two fields are empty; with an
optax-style optimizer (`init`, `update`, as the stateless fit takes) they are
the parameters' values and the optimizer's state. The estimator's state is
its value, or an `EstimatorStateVariables` holding it across separate calls.
For an estimator without state the gradients are those of `tape.gradient`.
"""

import collections
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.gradients import dense_gradient
from tfp_vi_estimators._internal.tfp_internals import fold_in_seed
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.variational_loss import check_arguments, evaluate

__all__ = [
    "EstimatorStateVariables",
    "StepResult",
    "StepState",
    "TrainingStep",
    "loss_and_parts",
    "replica_seed",
    "value_and_gradients",
]

StepState = collections.namedtuple(
    "StepState", ["parameters", "optimizer_state", "estimator"]
)
StepState.__doc__ = """What a step carries to the next: the parameters' values and the
optimizer's state (both `()` for `tf.Variable`s updated in place) and the
estimator's state (or the `EstimatorStateVariables` holding it)."""

StepResult = collections.namedtuple(
    "StepResult", ["loss", "gradients", "parameters", "finite"]
)
StepResult.__doc__ = """What a step reports: its loss, the gradients (dense), the
parameters after the step, and whether the loss and gradients were finite."""


def loss_and_parts(
    evaluate_fn: Callable,
    sources: Sequence,
    scalar_fn: Callable = tf.identity,
) -> tuple[Any, Any]:
    """`(evaluation, parts)`: `evaluate_fn()` differentiated by its estimator.

    Args:
      evaluate_fn: callable returning a `LossEvaluation` (see
        `variational_loss.evaluate`); it runs under the tape, so whatever it
        computes the surrogate from (an encoder, say) is differentiated too.
      sources: the variables (or tensors) to differentiate, or a callable
        returning them, called after `evaluate_fn` (so that variables a
        Keras layer creates at its first call are among them).
      scalar_fn: turns the loss into what is minimized (a mean over a batch,
        a scaling); the gradients are that scalar's. Default: the loss as is
        (a non-scalar loss is summed, as `tf.GradientTape` does).

    Returns:
      The `LossEvaluation` and its estimator's `gradient_parts`.
    """
    with tf.GradientTape(persistent=True) as tape:
        # Variables (tf and Keras) are watched as the loss reads them; plain
        # tensors (the stateless fit's parameters) must be watched here.
        if not callable(sources):
            tape.watch([s for s in sources if isinstance(s, tf.Tensor)])
        evaluation = evaluate_fn()
        scalar = scalar_fn(evaluation.loss)
    sources = list(sources() if callable(sources) else sources)
    parts = evaluation.estimator.gradient_parts(tape, scalar, evaluation, sources)
    return evaluation, parts


def value_and_gradients(
    target_log_prob_fn,
    surrogate_posterior,
    variables,
    estimator_state=None,
    sample_size=1,
    importance_sample_size=1,
    discrepancy_fn=kl_reverse,
    gradient_estimator=None,
    stopped_surrogate_posterior=None,
    seed=None,
    *,
    sampling="iid",
):
    """The loss, its gradients and the estimator's next state: one training step.

    For a hand-written training loop (or a Keras `train_step`). The loss and
    its arguments are those of `monte_carlo_variational_loss`; the gradients
    are those of the estimator, for estimators that carry state between steps
    too (`estimators.DoublyReparameterized(score_weight='adaptive')`):

    ```python
    estimator = estimators.DoublyReparameterized(score_weight="adaptive")
    state = None
    for step in range(num_steps):
        loss, grads, state = value_and_gradients(
            target_log_prob_fn, surrogate, surrogate.trainable_variables, state,
            sample_size=8, gradient_estimator=estimator, seed=(0, step))
        optimizer.apply_gradients(zip(grads, surrogate.trainable_variables))
    ```

    Args:
      target_log_prob_fn: as for `monte_carlo_variational_loss`.
      surrogate_posterior: as for `monte_carlo_variational_loss`.
      variables: list of the `tf.Variable`s (or tensors) to differentiate.
      estimator_state: the state returned by the previous step, or `None`
        before the first.
      sample_size: as for `monte_carlo_variational_loss`.
      importance_sample_size: as for `monte_carlo_variational_loss`.
      discrepancy_fn: as for `monte_carlo_variational_loss`.
      gradient_estimator: as for `monte_carlo_variational_loss`.
      stopped_surrogate_posterior: as for `monte_carlo_variational_loss`.
      seed: as for `monte_carlo_variational_loss`.
      sampling: keyword-only; as for `monte_carlo_variational_loss`.

    Returns:
      loss: the loss, shaped `batch_shape`.
      gradients: list of gradients, one per variable (`None` where the loss
        does not depend on it).
      estimator_state: the state to pass to the next step.

    Raises:
      TypeError, ValueError: as `monte_carlo_variational_loss`, and for
        `variables` that are not a non-empty list or tuple.
    """
    if not isinstance(variables, (list, tuple)) or not variables:
        raise TypeError(
            "`variables` must be a non-empty list or tuple of tf.Variables or "
            f"Tensors to differentiate; got {variables!r}."
        )
    config = check_arguments(
        target_log_prob_fn,
        surrogate_posterior,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        gradient_estimator=gradient_estimator,
        stopped_surrogate_posterior=stopped_surrogate_posterior,
        seed=seed,
        sampling=sampling,
    )
    estimator = config.estimator
    if estimator_state is None:
        estimator_state = estimator.initial_state(
            [tf.convert_to_tensor(v) for v in variables]
        )
    evaluation, parts = loss_and_parts(lambda: evaluate(config, seed), list(variables))
    grads, estimator_state = estimator.combine(parts, estimator_state)
    return evaluation.loss, grads, estimator_state


class TrainingStep:
    """`step(state, seed, batch) -> (state, result)`: one optimizer step.

    The loss under a tape, the estimator's gradient parts and `combine` (its
    state carried in the `StepState`), then the optimizer's update:

    ```python
    step = TrainingStep(loss_fn, optimizer, variables)
    state = step.initial_state(estimator)
    for t in range(num_steps):
        state, result = step(state, seed=(0, t))
    ```

    Args:
      loss_fn: `loss_fn(parameters, seed, batch)` returning a `LossEvaluation`
        (`variational_loss.evaluate`); `parameters` are the state's (`()`
        when training variables).
      optimizer: with `variables`, a Keras-style optimizer
        (`apply_gradients`); without, an optax-style one (`init(params)`,
        `update(grads, state, params)`, e.g. `optimizers.adam`).
      variables: the `tf.Variable`s to train, or a callable returning them
        (called after the loss, so that a Keras layer built by the loss is
        among them); `None` to train the explicit parameters of the state.
      scalar_fn: turns the loss into the scalar differentiated. Default: the
        loss as is.
      skip_non_finite: if `True`, a step whose loss or gradients are not
        finite changes nothing (`result.finite` says so); every variable then
        needs a gradient, and sparse gradients (`tf.IndexedSlices`) are made
        dense before the estimator combines them, so the check and the update
        see every entry. Default: `False` (as `tfp.math.minimize` and Keras).
    """

    def __init__(
        self,
        loss_fn: Callable,
        optimizer: Any,
        variables: Any = None,
        *,
        scalar_fn: Callable = tf.identity,
        skip_non_finite: bool = False,
    ):
        self._loss_fn = loss_fn
        self._optimizer = optimizer
        self._variables = variables
        self._scalar_fn = scalar_fn
        self._skip_non_finite = skip_non_finite

    @property
    def trains_variables(self) -> bool:
        """Whether the parameters are `tf.Variable`s updated in place."""
        return self._variables is not None

    def variables(self) -> list:
        """The variables trained (empty for explicit parameters)."""
        if self._variables is None:
            return []
        return list(self._variables() if callable(self._variables) else self._variables)

    def initial_state(self, estimator: Any, parameters: Any = ()) -> StepState:
        """The state before the first step, for `estimator` (the loss's)."""
        if self.trains_variables:
            zeros = [tf.zeros(v.shape, v.dtype) for v in self.variables()]
            return StepState((), (), estimator.initial_state(zeros))
        parameters = _as_tensors(parameters)
        return StepState(
            parameters,
            self._optimizer.init(parameters),
            estimator.initial_state(tf.nest.flatten(parameters)),
        )

    def __call__(self, state: StepState, seed: Any = None, batch: Any = None):
        """One step from `state`; returns `(next_state, StepResult)`."""
        parameters = state.parameters
        if not self.trains_variables:
            parameters = _as_tensors(parameters)
        loss, grads, estimator_state, to_apply = self.gradients(
            parameters, state.estimator, seed, batch
        )
        finite = _all_finite(loss, grads)
        if self._skip_non_finite:
            self._check_every_gradient(grads)
            parameters, optimizer_state, applied = tf.cond(
                finite,
                lambda: self._apply(to_apply, parameters, state.optimizer_state),
                lambda: (parameters, state.optimizer_state, tf.constant(False)),
            )
            estimator_state = tf.nest.map_structure(
                lambda new, old: tf.where(finite, new, old),
                estimator_state,
                _read(state.estimator),
            )
        else:
            parameters, optimizer_state, applied = self._apply(
                to_apply, parameters, state.optimizer_state
            )
        estimator_state = _stored(state.estimator, estimator_state)
        if self.trains_variables:
            with tf.control_dependencies([applied]):
                values = [tf.identity(v) for v in self.variables()]
        else:
            values = parameters
        result = StepResult(loss, [dense_gradient(g) for g in grads], values, finite)
        return StepState(parameters, optimizer_state, estimator_state), result

    def gradients(self, parameters, estimator_state, seed, batch):
        """`(loss, grads, estimator_state, to_apply)` of one step.

        `to_apply` is what `_apply` takes: here the gradients themselves (a
        replicated step passes each replica's).
        """
        flat = [] if self.trains_variables else tf.nest.flatten(parameters)
        evaluation, parts = loss_and_parts(
            lambda: self._loss_fn(parameters, seed, batch),
            self.variables if self.trains_variables else flat,
            self._scalar_fn,
        )
        sources = self.variables() if self.trains_variables else flat
        if self._skip_non_finite:
            parts = tf.nest.map_structure(dense_gradient, parts)
        estimator = evaluation.estimator
        grads, estimator_state = estimator.combine(
            parts, _read(estimator_state, estimator, sources)
        )
        return evaluation.loss, grads, estimator_state, grads

    def _apply(self, grads, parameters, optimizer_state):
        """`(parameters, optimizer_state, applied)` after the update."""
        if self.trains_variables:
            self._apply_to_variables(grads)
            return parameters, optimizer_state, tf.constant(True)
        grads = tf.nest.pack_sequence_as(parameters, list(grads))
        updates, optimizer_state = self._optimizer.update(
            grads, optimizer_state, parameters
        )
        parameters = tf.nest.map_structure(lambda a, b: a + b, parameters, updates)
        return parameters, optimizer_state, tf.constant(True)

    def _apply_to_variables(self, grads):
        self._optimizer.apply_gradients(zip(grads, self.variables(), strict=True))

    def _check_every_gradient(self, grads):
        sources = self.variables() or [f"parameter {i}" for i in range(len(grads))]
        for source, g in zip(sources, grads, strict=True):
            if g is None:
                name = getattr(source, "name", source)
                raise ValueError(
                    f"The loss has no gradient with respect to the variable "
                    f"{name!r}; pass `trainable_variables` without it."
                )


def replica_seed(seed: Any) -> Any:
    """A replica's stateless seed: the one seed convention of every driver.

    ```none
    replica_seed(seed) = fold_in(seed, r)   # r: replica id, with R > 1 replicas
                       = seed               # with one replica, or seed=None
    ```

    With one replica (no strategy, or a strategy of one device) the seed is
    unchanged, so a fit is the one without a strategy (and, for the same
    seed, `tfp.vi`'s); with several each replica draws independent samples.
    The fit loop and the Keras models both draw their replicas' seeds here.

    Args:
      seed: a stateless seed (an integer `Tensor` of shape `[2]`), or `None`.

    Returns:
      The replica's seed, `int32` of shape `[2]` (or `None` for `None`).
    """
    if seed is None or tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return seed
    seed = tfp.random.sanitize_seed(seed)
    context = tf.distribute.get_replica_context()
    replica_id = 0 if context is None else context.replica_id_in_sync_group
    return fold_in_seed(seed, tf.cast(replica_id, tf.int32))


def unique_variables(variables):
    """The variables, each once, in order of first appearance.

    A trace that creates variables (a Keras layer built on first use) watches
    each of them twice; a surrogate may list a shared variable twice.
    """
    seen, kept = set(), []
    for v in variables:
        if v.ref() not in seen:
            seen.add(v.ref())
            kept.append(v)
    return kept


def _as_tensors(parameters):
    """The parameters with Python numbers and arrays as tensors a tape watches."""
    flat = [tf.convert_to_tensor(x) for x in tf.nest.flatten(parameters)]
    return tf.nest.pack_sequence_as(parameters, flat)


def _all_finite(loss, grads):
    return tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(loss))]
        + [
            tf.reduce_all(tf.math.is_finite(dense_gradient(g)))
            for g in grads
            if g is not None
        ]
    )


def _read(estimator_state, estimator=None, sources=None):
    """The estimator's state, read from its `EstimatorStateVariables` if held there."""
    if isinstance(estimator_state, EstimatorStateVariables):
        return estimator_state.read(estimator, sources)
    return estimator_state


def _stored(holder, estimator_state):
    """The next step's estimator state: assigned to its variables if held there."""
    if isinstance(holder, EstimatorStateVariables):
        holder.assign(estimator_state)
        return holder
    return estimator_state


class EstimatorStateVariables:
    """An estimator's state kept in non-trainable `tf.Variable`s, for a driver
    whose steps are separate calls (the Keras models).

    The variables are created at the first step (under `tf.init_scope`, so a
    traced step may create them on its first trace), with MEAN aggregation:
    under a `tf.distribute` strategy each replica assigns the state it
    computed from its share of the draws, and the variable holds their mean.
    For the adaptive score weight's moments that mean estimates the same
    weight as one process's (numerator and denominator scale alike with the
    share). An estimator without state creates none.
    """

    def __init__(self):
        self._variables = None

    def read(self, estimator=None, sources=None):
        """The current state (the estimator's initial state at the first call)."""
        if self._variables is None:
            with tf.init_scope():
                initial = estimator.initial_state(
                    [tf.zeros(s.shape, s.dtype) for s in sources]
                )
                self._variables = tf.nest.map_structure(
                    lambda t: tf.Variable(
                        t,
                        trainable=False,
                        name="estimator_state",
                        aggregation=tf.VariableAggregation.MEAN,
                    ),
                    initial,
                )
        return tf.nest.map_structure(lambda v: v.read_value(), self._variables)

    def assign(self, state):
        """Stores the state a step returned."""
        tf.nest.map_structure(lambda v, t: v.assign(t), self._variables, state)
