"""The interface every gradient estimator implements, and the steps they share.

An estimator is pure tensor mathematics: it never samples and never calls the
target. The loss (`tfp_vi_estimators.monte_carlo_variational_loss`) draws the
samples, evaluates the target and the surrogate density in the form the
estimator asks for, arranges them as `[sample_size, importance_sample_size] +
batch_shape`, and hands them to `per_draw_loss`, which returns one surrogate
value per independent draw. The value of that surrogate is always the
discrepancy `f(L)`; only its gradient differs between estimators.

```none
lw[s, k] = target_log_prob[s, k] - surrogate_log_prob[s, k]
L[s]     = log mean_k exp(lw[s, k])
loss     = mean_s f(L[s])
```
"""

import abc

import tensorflow as tf

SURROGATE = "surrogate"
"""The surrogate log-density with live parameters."""

STOPPED_PARAMETERS = "stopped_parameters"
"""The surrogate log-density with stopped parameters (gradient to the sample only)."""


class GradientEstimator(abc.ABC):
    """Base class: turns log-densities into a surrogate whose gradient is the estimate.

    Subclasses set three class attributes that tell the loss what to prepare,
    and implement `per_draw_loss`.

    Attributes:
      reparameterized_samples: whether the samples keep their pathwise
        gradient. Estimators that need it refuse surrogates that are not fully
        reparameterized.
      surrogate_log_prob: `SURROGATE` for `log q_phi(z)` with live parameters,
        or `STOPPED_PARAMETERS` for `log q_{stop(phi)}(z)`.
      particles_first: lay the samples out as `[importance_sample_size,
        sample_size]` instead of `[sample_size * importance_sample_size]`
        (tfp.vi does this for VIMCO; matching it keeps samples identical).
      min_importance_sample_size: smallest `importance_sample_size` allowed.
    """

    reparameterized_samples: bool = True
    surrogate_log_prob: str = SURROGATE
    particles_first: bool = False
    min_importance_sample_size: int = 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def prepare_samples(self, samples):
        """Hook applied to the samples before the target and density see them.

        Args:
          samples: the (possibly nested) samples, `[sample_size *
            importance_sample_size] + batch_shape + event_shape`.

        Returns:
          samples, state: the samples to evaluate densities at, and any state
            `per_draw_loss` needs (passed back to it as `state`).
        """
        return samples, None

    @abc.abstractmethod
    def per_draw_loss(self, target_log_prob, surrogate_log_prob, discrepancy_fn, state):
        """Per-draw surrogate loss.

        Args:
          target_log_prob: `Tensor` `[S, K] + batch_shape`.
          surrogate_log_prob: `Tensor` `[S, K] + batch_shape`, in the form
            named by `self.surrogate_log_prob`.
          discrepancy_fn: elementwise Csiszar function in log space.
          state: whatever `prepare_samples` returned.

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
