"""The `GradientEstimators` enum and the choice of an estimator for a loss."""

import enum
import warnings

import tensorflow_probability as tfp

from tfp_vi_estimators import estimators
from tfp_vi_estimators._internal.reparameterization import (
    is_fully_reparameterized,
    is_partly_reparameterized,
)
from tfp_vi_estimators.estimators.plan import Needs, PathGradient

__all__ = ["GradientEstimators", "resolve_gradient_estimator"]


class GradientEstimators(enum.Enum):
    """Gradient estimators for variational losses (the members of `tfp.vi`'s).

    Variational losses implemented by `monte_carlo_variational_loss` are
    expectations under the surrogate posterior,
    `loss = E_q[f(log mean_k p(z_k) / q(z_k))]`, estimated from `sample_size`
    independent draws of `importance_sample_size` particles each. A gradient
    estimator is a stochastic estimate of the *gradient* of that expectation.
    Each member dispatches to a default estimator object from
    `tfp_vi_estimators.estimators`; pass such an object instead to configure it.

    Members:
      SCORE_FUNCTION: REINFORCE [1, 2]. Works with any surrogate (samples are
        not differentiated) and, unlike `tfp.vi`, with any
        `importance_sample_size`. High variance.
      REPARAMETERIZATION: pathwise gradients [3]; needs a fully
        reparameterized surrogate (directly or implicitly [4]). The IWAE
        gradient when `importance_sample_size > 1`.
      DOUBLY_REPARAMETERIZED: path derivatives: sticking the landing [6] at
        `importance_sample_size = 1`, doubly reparameterized gradients [5]
        above, generalized to every Csiszar discrepancy and to parameters of
        the target (unbiased where `tfp.vi`'s is not). The stopped surrogate
        is built automatically when not given.
      VIMCO: the multi-sample score function with leave-one-out baselines [7];
        needs `importance_sample_size >= 2`.

    #### References

    [1] R. J. Williams. Simple statistical gradient-following algorithms for
        connectionist reinforcement learning. Machine Learning, 8(3-4), 1992.
    [2] Shakir Mohamed. Machine learning trick of the day: log derivative
        trick. 2015.
    [3] Diederik P. Kingma and Max Welling. Auto-encoding variational Bayes.
        arXiv:1312.6114, 2013.
    [4] Michael Figurnov, Shakir Mohamed and Andriy Mnih. Implicit
        reparameterization gradients. arXiv:1805.08498, 2018.
    [5] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison.
        Doubly reparameterized gradient estimators for Monte Carlo objectives.
        arXiv:1810.04152, 2018.
    [6] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing.
        arXiv:1703.09194, 2017.
    [7] Andriy Mnih and Danilo Rezende. Variational inference for Monte Carlo
        objectives. ICML 2016. arXiv:1602.06725.
    """

    SCORE_FUNCTION = 0
    REPARAMETERIZATION = 1
    DOUBLY_REPARAMETERIZED = 2
    VIMCO = 3

    def default_estimator(self) -> estimators.GradientEstimator:
        """The estimator object this member dispatches to."""
        return _DEFAULTS[self]()


_DEFAULTS = {
    GradientEstimators.SCORE_FUNCTION: estimators.ScoreFunction,
    GradientEstimators.REPARAMETERIZATION: estimators.Reparameterization,
    GradientEstimators.DOUBLY_REPARAMETERIZED: estimators.DoublyReparameterized,
    GradientEstimators.VIMCO: estimators.VIMCO,
}

_CHOICES = (
    "a tfp_vi_estimators.GradientEstimators member (SCORE_FUNCTION, "
    "REPARAMETERIZATION, DOUBLY_REPARAMETERIZED, VIMCO), a "
    "tfp_vi_estimators.estimators.GradientEstimator object, or None"
)


def resolve_gradient_estimator(
    gradient_estimator, use_reparameterization, surrogate_posterior
) -> estimators.GradientEstimator:
    """The estimator object for the arguments of a variational loss.

    `None` chooses as `tfp.vi` does, with one improvement: reparameterization
    if every part of the surrogate is fully reparameterized (or
    `use_reparameterization=True`), `MixedReparameterization` for a
    `JointDistribution` with some reparameterized parts (tfp.vi would
    differentiate through the others and warn of bias), otherwise the score
    function, with a warning. `REPARAMETERIZATION` and
    `DOUBLY_REPARAMETERIZED` requested on such a mixed surrogate also give
    `MixedReparameterization`.

    Raises:
      TypeError: if `gradient_estimator` is none of the accepted kinds.
      ValueError: if an estimator that differentiates samples is requested on a
        surrogate it cannot serve, or if `use_reparameterization` contradicts
        `gradient_estimator`.
    """
    reparameterized = is_fully_reparameterized(surrogate_posterior)
    by_member = gradient_estimator is None or isinstance(
        gradient_estimator, (GradientEstimators, tfp.vi.GradientEstimators)
    )
    if gradient_estimator is None:
        if use_reparameterization is None:
            use_reparameterization = reparameterized or is_partly_reparameterized(
                surrogate_posterior
            )
        if not use_reparameterization:
            warnings.warn(
                "Using score-function gradient estimate, which may have high "
                "variance. To disable this warning, explicitly pass "
                "`gradient_estimator=GradientEstimators.SCORE_FUNCTION`.",
                stacklevel=3,
            )
            return estimators.ScoreFunction()
        estimator = estimators.Reparameterization()
    else:
        estimator = _as_estimator(gradient_estimator)
        if use_reparameterization is not None and bool(use_reparameterization) != (
            estimator.plan.path_gradient is not PathGradient.STOPPED
        ):
            raise ValueError(
                f"`use_reparameterization={use_reparameterization}` contradicts "
                f"`gradient_estimator={gradient_estimator}`; "
                "`use_reparameterization` is deprecated: pass only "
                "`gradient_estimator`."
            )
    if (
        by_member
        and estimator.plan.needs is Needs.FULL
        and not reparameterized
        and is_partly_reparameterized(surrogate_posterior)
    ):
        estimator = estimators.MixedReparameterization()
    return estimator


def _as_estimator(gradient_estimator) -> estimators.GradientEstimator:
    if isinstance(gradient_estimator, estimators.GradientEstimator):
        return gradient_estimator
    if isinstance(gradient_estimator, GradientEstimators):
        return gradient_estimator.default_estimator()
    # Code migrating from tfp.vi may still pass tfp.vi's enum members.
    if isinstance(gradient_estimator, tfp.vi.GradientEstimators):
        return GradientEstimators[gradient_estimator.name].default_estimator()
    raise TypeError(
        f"`gradient_estimator` must be {_CHOICES}; got {gradient_estimator!r} "
        f"of type {type(gradient_estimator).__name__}."
    )
