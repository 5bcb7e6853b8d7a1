"""The loss's arguments, checked once and frozen: `check_arguments` -> `LossConfig`.

`monte_carlo_variational_loss` checks its arguments here before any tensor
work; the fitting loop, the Keras models and the diagnostics check once and
then evaluate the loss many times from the same `LossConfig`
(`variational_loss.evaluate_loss(config, seed)`), so the estimator is resolved
once and the arguments do not travel as loose keywords.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow_probability as tfp

from tfp_vi_estimators import discrete_sampling
from tfp_vi_estimators._internal import checks
from tfp_vi_estimators._internal.quasi_monte_carlo import (
    QuasiMonteCarlo,
    unsupported_reason,
)
from tfp_vi_estimators._internal.reparameterization import reparameterized_parts
from tfp_vi_estimators._internal.surrogates import as_distribution
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimator_choice import resolve_gradient_estimator
from tfp_vi_estimators.estimators import GradientEstimator
from tfp_vi_estimators.estimators.plan import Layout, Needs

__all__ = ["LossConfig", "check_arguments"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Validated arguments of one variational loss (everything but the seed).

    `target_log_prob_fn`, `surrogate_posterior`, `sample_size`,
    `importance_sample_size`, `discrepancy_fn` and
    `stopped_surrogate_posterior` are as passed to
    `monte_carlo_variational_loss`.

    Attributes:
      estimator: the resolved `GradientEstimator` object.
      name: the name scope of the loss's ops.
      sampling: `None` for iid draws (as `tfp.vi`), or the
        `QuasiMonteCarlo` option (`sampling='rqmc'`).
    """

    target_log_prob_fn: Callable
    surrogate_posterior: Any
    sample_size: Any
    importance_sample_size: Any
    discrepancy_fn: Callable
    estimator: GradientEstimator
    stopped_surrogate_posterior: Any = None
    name: str = "monte_carlo_variational_loss"
    sampling: QuasiMonteCarlo | None = None


def check_arguments(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    sample_size: Any = 1,
    importance_sample_size: Any = 1,
    discrepancy_fn: Callable = kl_reverse,
    use_reparameterization: bool | None = None,
    gradient_estimator: Any = None,
    stopped_surrogate_posterior: Any = None,
    seed: Any = None,
    name: str | None = None,
    *,
    sampling: Any = "iid",
) -> LossConfig:
    """Every argument check of `monte_carlo_variational_loss`, no tensor work.

    Returns:
      The `LossConfig` of the arguments (the seed is checked, not kept).

    Raises:
      TypeError, ValueError: naming the argument.
    """
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    sample_size = checks.check_positive_integer(
        "sample_size", sample_size, integral_floats=True
    )
    importance_sample_size = checks.check_positive_integer(
        "importance_sample_size", importance_sample_size, integral_floats=True
    )
    checks.check_callable("discrepancy_fn", discrepancy_fn)
    checks.check_stopped_surrogate(surrogate_posterior, stopped_surrogate_posterior)
    checks.check_seed(seed)
    checks.check_name(name)
    estimator = resolve_gradient_estimator(
        gradient_estimator, use_reparameterization, surrogate_posterior
    )
    _check_plan(estimator, surrogate_posterior, sample_size, importance_sample_size)
    _check_discrepancy(estimator, discrepancy_fn)
    sampling = _check_sampling(
        sampling, estimator, surrogate_posterior, sample_size, importance_sample_size
    )
    return LossConfig(
        target_log_prob_fn=target_log_prob_fn,
        surrogate_posterior=surrogate_posterior,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        estimator=estimator,
        stopped_surrogate_posterior=stopped_surrogate_posterior,
        name=name or "monte_carlo_variational_loss",
        sampling=sampling,
    )


def _check_plan(estimator, surrogate, sample_size, importance_sample_size):
    """What the estimator's plan needs of the surrogate and the sample sizes."""
    plan = estimator.plan
    if plan.layout is Layout.ONE_PER_COMPONENT:
        surrogate = as_distribution(surrogate)
        if not isinstance(surrogate, tfp.distributions.MixtureSameFamily):
            raise ValueError(
                f"{estimator.name} needs a tfd.MixtureSameFamily "
                f"`surrogate_posterior`; got {type(surrogate).__name__}."
            )
        surrogate = surrogate.components_distribution
    if plan.discrete is None:
        _check_reparameterization(estimator, surrogate)
    else:
        discrete_sampling.check_surrogate(estimator, surrogate, sample_size)
    estimator.check_surrogate(as_distribution(surrogate))
    checks.check_positive_integer(
        "importance_sample_size",
        importance_sample_size,
        minimum=plan.min_importance_sample_size,
    )
    checks.check_positive_integer(
        "sample_size", sample_size, minimum=plan.min_sample_size
    )
    if (
        plan.max_importance_sample_size is not None
        and importance_sample_size > plan.max_importance_sample_size
    ):
        raise ValueError(
            f"{estimator.name} needs `importance_sample_size="
            f"{plan.max_importance_sample_size}`; got {importance_sample_size}."
        )


def _check_reparameterization(estimator, surrogate):
    reparameterized = reparameterized_parts(surrogate)
    needs = estimator.plan.needs
    if needs is Needs.FULL and not all(reparameterized):
        missing = "is not fully reparameterized"
    elif needs is Needs.PARTIAL and not isinstance(
        as_distribution(surrogate), tfp.distributions.JointDistribution
    ):
        missing = "is not a JointDistribution of reparameterized and other parts"
    elif needs is Needs.PARTIAL and not any(reparameterized):
        missing = "has no reparameterized part"
    else:
        return
    raise ValueError(
        f"Gradient estimator {estimator!r} differentiates the samples, but "
        f"`surrogate_posterior` ({surrogate.name!r}) {missing} "
        f"(reparameterization_type={surrogate.reparameterization_type}). Use "
        "`GradientEstimators.SCORE_FUNCTION` or, with "
        "`importance_sample_size >= 2`, `GradientEstimators.VIMCO`; for a "
        "JointDistribution with some reparameterized parts, "
        "`estimators.MixedReparameterization`."
    )


def _check_discrepancy(estimator, discrepancy_fn):
    required = estimator.plan.discrepancy_fn
    if required is not None and discrepancy_fn is not required:
        raise ValueError(
            f"{estimator.name} is unbiased only for the ELBO: `discrepancy_fn` "
            f"must be {required.__name__}; got {discrepancy_fn!r}."
        )


def check_sampling_kind(sampling: Any) -> QuasiMonteCarlo | None:
    """`'iid'` -> `None`, `'rqmc'` or `QuasiMonteCarlo()` -> the option.

    What can be checked of `sampling` without the surrogate and estimator
    (the Keras models check it when built, the rest at the first step).

    Raises:
      TypeError: for anything but a string or a `QuasiMonteCarlo` instance.
      ValueError: for a string other than `'iid'` and `'rqmc'`.
    """
    if isinstance(sampling, QuasiMonteCarlo):
        return sampling
    if not isinstance(sampling, str):
        raise TypeError(
            "`sampling` must be 'iid', 'rqmc' or a "
            "tfp_vi_estimators.quasi_monte_carlo.QuasiMonteCarlo() instance; got "
            f"{sampling!r} of type {type(sampling).__name__}."
        )
    if sampling not in ("iid", "rqmc"):
        raise ValueError(f"`sampling` must be 'iid' or 'rqmc'; got {sampling!r}.")
    return QuasiMonteCarlo() if sampling == "rqmc" else None


def _check_sampling(
    sampling, estimator, surrogate, sample_size, importance_sample_size
):
    """`'iid'` -> `None`; `'rqmc'` or `QuasiMonteCarlo()` -> the option, if it
    can serve this estimator, surrogate and these (static) sample sizes."""
    sampling = check_sampling_kind(sampling)
    if sampling is None:
        return None
    plan = estimator.plan
    each_component = plan.layout is Layout.ONE_PER_COMPONENT
    if (
        plan.needs is not Needs.FULL
        or plan.layout not in (Layout.DRAWS_FIRST, Layout.ONE_PER_COMPONENT)
        or plan.discrete is not None
    ):
        raise ValueError(
            f"`sampling={sampling!r}` pushes quasi-Monte Carlo noise through a "
            "reparameterized surrogate; it serves REPARAMETERIZATION, "
            "DOUBLY_REPARAMETERIZED and MixtureStickingTheLanding (and their "
            f"configured forms), not {estimator!r}: score-function terms and "
            "their baselines assume independent draws (a leave-one-out baseline "
            "would correlate with its draw). Use `sampling='iid'` with it."
        )
    if not all(isinstance(n, int) for n in (sample_size, importance_sample_size)):
        raise ValueError(
            f"`sampling={sampling!r}` needs Python integer `sample_size` and "
            "`importance_sample_size` (the point set is fixed when traced); got "
            f"{sample_size!r} and {importance_sample_size!r}."
        )
    reason = unsupported_reason(surrogate, each_component)
    if reason is not None:
        raise ValueError(
            f"`sampling={sampling!r}` cannot serve `surrogate_posterior` "
            f"({type(as_distribution(surrogate)).__name__}): {reason}. Use "
            "`sampling='iid'`."
        )
    return sampling
