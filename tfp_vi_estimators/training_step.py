"""One training step's loss and gradients, with the estimator's state carried.

Every driver (the fit loop, the stateless fit, the Keras models, a
hand-written loop through `value_and_gradients`) differentiates the loss here,
so an estimator that learns across steps (the adaptive score weight of
`estimators.DoublyReparameterized(score_weight='adaptive')`) adapts the same
way in all of them:

```none
evaluation = loss(seed)                      # under a persistent tape
parts      = estimator.gradient_parts(tape, scalar(evaluation.loss), ...)
(several replicas: parts all-reduced with MEAN)
grads, estimator_state = estimator.combine(parts, estimator_state)
```

For an estimator without state the gradients are those of `tape.gradient`.
"""

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.variational_loss import check_arguments, evaluate

__all__ = ["EstimatorStateVariables", "loss_and_parts", "value_and_gradients"]


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

    def read(self, estimator, sources):
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
