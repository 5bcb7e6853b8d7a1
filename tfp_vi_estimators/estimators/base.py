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

import tensorflow as tf

from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)

__all__ = ["GradientEstimator", "log_mean_exp", "pathwise_plan", "with_gradient_of"]


def pathwise_plan(*densities, path_gradient=PathGradient.LIVE, **limits):
    """A plan for an estimator that differentiates fully reparameterized samples."""
    return SamplingPlan(
        needs=Needs.FULL,
        layout=Layout.DRAWS_FIRST,
        path_gradient=path_gradient,
        densities=frozenset(densities or (Density.SURROGATE,)),
        **limits,
    )


class GradientEstimator(abc.ABC):
    """Base class: turns log-densities into a surrogate whose gradient is the estimate.

    Subclasses set `plan` (a class attribute, or an instance attribute when it
    depends on the configuration) and implement `per_draw_loss`.
    """

    plan: SamplingPlan = pathwise_plan()

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def per_draw_loss(self, log_densities, discrepancy_fn, gradient_scale=None):
        """Per-draw surrogate loss.

        Args:
          log_densities: the `LogDensities` the plan asked for.
          discrepancy_fn: elementwise Csiszar function in log space.
          gradient_scale: the draw's `GradientScale` when the plan's
            `path_gradient` is `SCALED`, else `None`.

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
