"""The interface every gradient estimator implements, and the steps they share.

An estimator is pure tensor mathematics: it never samples and never calls the
target. It states what it needs as a `SamplingPlan` (`plan`); the loss
(`tfp_vi_estimators.monte_carlo_variational_loss`) draws by that plan,
evaluates the target, and hands `per_draw_loss` the `LogDensities` it asked
for, arranged `[sample_size, importance_sample_size] + batch_shape`.
`per_draw_loss` returns one surrogate value per independent draw. Its value is
the discrepancy `f(L)` (one exception, the stratified mixture estimator, says
so); only its gradient differs between estimators.

```none
lw[s, k] = log p(z[s, k]) - log q(z[s, k])
L[s]     = log mean_k exp(lw[s, k])
loss     = mean_s f(L[s])
```
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)

__all__ = [
    "GradientEstimator",
    "LossEvaluation",
    "log_mean_exp",
    "pathwise_plan",
    "with_gradient_of",
]


def pathwise_plan(*densities, path_gradient=PathGradient.LIVE, **limits):
    """A plan for an estimator that differentiates fully reparameterized samples."""
    return SamplingPlan(
        needs=Needs.FULL,
        layout=Layout.DRAWS_FIRST,
        path_gradient=path_gradient,
        densities=frozenset(densities or (Density.SURROGATE,)),
        **limits,
    )


@dataclasses.dataclass(frozen=True)
class LossEvaluation:
    """One evaluated loss and the draw it came from, for a training step.

    Attributes:
      loss: the loss, shaped `batch_shape`.
      samples: the samples the target was evaluated at.
      log_densities: the draw's `LogDensities`, the target's included,
        `[S, K] + batch_shape`.
      discrepancy_fn: the loss's Csiszar function.
      estimator: the loss's `GradientEstimator`, which differentiates it.
    """

    loss: Any
    samples: Any
    log_densities: Any
    discrepancy_fn: Callable
    estimator: Any


class GradientEstimator(abc.ABC):
    """Base class: turns log-densities into a surrogate whose gradient is the estimate.

    Subclasses set `plan` (a class attribute, or an instance attribute when it
    depends on the configuration) and implement `per_draw_loss`.

    A training step (`training_step.value_and_gradients`, the fit loops, the Keras
    models) asks the estimator for its gradient in three parts, so that an
    estimator may carry state from one step to the next (as the adaptive
    score weight does) without any state in the loss:

    ```none
    state = estimator.initial_state(sources)                 # before step 0
    parts = estimator.gradient_parts(tape, scalar, evaluation, sources)
    # (under several replicas: parts averaged across them)
    grads, state = estimator.combine(parts, state)
    ```

    The defaults differentiate the loss and keep no state.

    Attributes:
      carries_state: whether `combine` learns from step to step (so that a
        plain `tape.gradient` of the loss is not this estimator's gradient).
    """

    carries_state = False

    def check_surrogate(self, surrogate):
        """Raises for a surrogate this estimator cannot serve (default: none).

        Called by the argument checks, before any tensor work, after the
        plan's own checks.
        """
        del surrogate

    def initial_state(self, sources):
        """The state carried across training steps (`()`: none)."""
        del sources
        return ()

    def gradient_parts(self, tape, scalar, evaluation, sources):
        """What the step's gradient is made of; linear in the draws.

        Args:
          tape: the `tf.GradientTape` (persistent) that recorded the loss.
          scalar: the scalar the step minimizes, computed from
            `evaluation.loss` (reduced, scaled).
          evaluation: the `LossEvaluation`.
          sources: the variables or tensors differentiated.

        Returns:
          A structure of gradients whose mean over replicas is the parts of
          all their draws (default: the gradients of `scalar`).
        """
        del evaluation
        return tape.gradient(scalar, sources)

    def combine(self, parts, state):
        """`(gradients, next_state)` from the step's parts and the state."""
        return parts, state

    plan: SamplingPlan = pathwise_plan()

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def per_draw_loss(self, log_densities, discrepancy_fn):
        """Per-draw surrogate loss.

        Args:
          log_densities: the `LogDensities` the plan asked for (with the
            samples' `scale_port` when the plan's `path_gradient` is
            `SCALED`).
          discrepancy_fn: elementwise Csiszar function in log space.

        Returns:
          `Tensor` `[S] + batch_shape` whose value is `discrepancy_fn(L)` and
          whose gradient is this estimator's.
        """

    def __repr__(self) -> str:
        return f"{self.name}()"


def log_mean_exp(log_weights):
    """`log mean_k exp(log_weights[:, k])`; exact (no rounding) when K is 1."""
    num_particles = tf.compat.dimension_value(log_weights.shape[1])
    if num_particles == 1:
        return log_weights[:, 0]
    log_k = tf.math.log(tf.cast(tf.shape(log_weights)[1], log_weights.dtype))
    return tf.reduce_logsumexp(log_weights, axis=1) - log_k


def with_gradient_of(value, surrogate):
    """`value` in the forward pass, the gradient of `surrogate` in the backward.

    `surrogate - stop(surrogate)` is exactly zero in IEEE arithmetic, so the
    returned value equals `value` bit for bit; no gradient reaches `value`.
    """
    return tf.stop_gradient(value) + (surrogate - tf.stop_gradient(surrogate))
