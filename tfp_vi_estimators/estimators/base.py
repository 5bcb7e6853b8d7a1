"""The interface every gradient estimator implements, and the steps they share.

An estimator is pure tensor mathematics: it never samples and never calls the
target. The loss (`tfp_vi_estimators.monte_carlo_variational_loss`) draws the
samples, evaluates the target, arranges log-densities as `[sample_size,
importance_sample_size] + batch_shape`, and hands them to `per_draw_loss` in a
`LogDensities`, which computes each form of the surrogate density only if the
estimator reads it. `per_draw_loss` returns one surrogate value per
independent draw. Its value is the discrepancy `f(L)` (one exception, the
stratified mixture estimator, says so); only its gradient differs between
estimators.

```none
lw[s, k] = log p(z[s, k]) - log q(z[s, k])
L[s]     = log mean_k exp(lw[s, k])
loss     = mean_s f(L[s])
```
"""

import abc

import tensorflow as tf
import tensorflow_probability as tfp

FULL = "full"
"""Every part of the surrogate must be fully reparameterized."""

PARTIAL = "partial"
"""Some parts reparameterized, the rest handled by the score function."""

NONE = "none"
"""Samples are not differentiated; any surrogate will do."""


class LogDensities:
    """Per-particle log-densities `[S, K] + batch_shape`, each computed on first use.

    Attributes:
      target: `log p(z)`, evaluated at the samples the estimator prepared.
      surrogate: `log q_phi(z)` at the samples as drawn: live parameters, and a
        live sample when the estimator differentiates samples.
      stopped_parameters: `log q_{stop(phi)}(z~)`: gradient to the prepared
        sample `z~` only.
      stopped_sample: `log q_phi(stop(z))`: gradient to the parameters only.
      non_reparameterized: the log-density of the parts of a
        `JointDistribution` surrogate that are not reparameterized, live
        parameters and parents (for `PARTIAL` estimators only).
    """

    def __init__(self, target, **lazy):
        self.target = target
        self._lazy = lazy
        self._cache = {}

    def __getattr__(self, name):
        lazy = self.__dict__.get("_lazy", {})
        if name not in lazy:
            raise AttributeError(name)
        if name not in self._cache:
            self._cache[name] = lazy[name]()
        return self._cache[name]


class GradientEstimator(abc.ABC):
    """Base class: turns log-densities into a surrogate whose gradient is the estimate.

    Subclasses set class attributes that tell the loss what to prepare and
    implement `per_draw_loss`.

    Attributes:
      reparameterization: `FULL`, `PARTIAL` or `NONE`: what the estimator
        needs of the surrogate. With `FULL` or `PARTIAL` samples keep their
        pathwise gradient; with `NONE` they are stopped.
      particles_first: lay the samples out as `[importance_sample_size,
        sample_size]` instead of `[sample_size * importance_sample_size]`
        (tfp.vi does this for VIMCO; matching it keeps samples identical).
      min_importance_sample_size: smallest `importance_sample_size` allowed.
      min_sample_size: smallest `sample_size` allowed.
    """

    reparameterization: str = FULL
    particles_first: bool = False
    min_importance_sample_size: int = 1
    min_sample_size: int = 1

    @property
    def reparameterized_samples(self) -> bool:
        return self.reparameterization != NONE

    @property
    def name(self) -> str:
        return type(self).__name__

    def prepare_samples(self, samples):
        """Hook applied to the samples before the target and densities see them.

        Args:
          samples: the (possibly nested) samples, `[sample_size *
            importance_sample_size] + batch_shape + event_shape`.

        Returns:
          samples, state: the samples to evaluate densities at, and any state
            `per_draw_loss` needs (passed back to it as `state`).
        """
        return samples, None

    def check_surrogate(self, surrogate):
        """Raise `ValueError` if this estimator cannot serve `surrogate`."""
        kinds = tf.nest.flatten(surrogate.reparameterization_type)
        reparameterized = [k == tfp.distributions.FULLY_REPARAMETERIZED for k in kinds]
        if self.reparameterization == FULL and not all(reparameterized):
            missing = "is not fully reparameterized"
        elif self.reparameterization == PARTIAL and not any(reparameterized):
            missing = "has no reparameterized part"
        else:
            return
        raise ValueError(
            f"Gradient estimator {self!r} differentiates the samples, but "
            f"`surrogate_posterior` ({surrogate.name!r}) {missing} "
            f"(reparameterization_type={surrogate.reparameterization_type}). Use "
            "`GradientEstimators.SCORE_FUNCTION` or, with "
            "`importance_sample_size >= 2`, `GradientEstimators.VIMCO`; for a "
            "JointDistribution with some reparameterized parts, "
            "`estimators.MixedReparameterization`."
        )

    def check_arguments(self, sample_size, importance_sample_size, discrepancy_fn):
        """Python-level checks of the loss's arguments; raise `ValueError`."""
        del sample_size, importance_sample_size, discrepancy_fn

    @abc.abstractmethod
    def per_draw_loss(self, log_densities, discrepancy_fn, state):
        """Per-draw surrogate loss.

        Args:
          log_densities: a `LogDensities`; read only the fields the estimator
            needs (each is computed on first use).
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
