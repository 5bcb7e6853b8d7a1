"""The loss's arguments, checked once and frozen: options, then the problem.

`LossSettings` (the options as a user gives them, checked alone) ->
`check_options` -> `LossOptions` (sizes, discrepancy, the resolved estimator,
the sampling route: decided once, against a surrogate); `check_problem` ->
`Problem` (the target and the surrogate of one call); `check_arguments` does
both -> `LossConfig(problem, options)`. The fits and the Keras models keep a
`LossSettings` and check it against their surrogate
(`LossSettings.options_for`, `LossSettings.config_for`).

`monte_carlo_variational_loss` checks its arguments here before any tensor
work; the fitting loop, the Keras models and the diagnostics check once and
then evaluate the loss many times from the same `LossConfig`
(`variational_loss.evaluate_loss(config, seed)`), so the estimator is resolved
once and the arguments do not travel as loose keywords.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import discrete_sampling, sampler
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

__all__ = [
    "LossConfig",
    "LossOptions",
    "LossSettings",
    "Problem",
    "check_arguments",
    "check_options",
    "check_problem",
]


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The loss's options as a user gives them, checked before any surrogate.

    `sample_size`, `importance_sample_size`, `discrepancy_fn`,
    `gradient_estimator` and `sampling`, as for `monte_carlo_variational_loss`
    (the same defaults). The fits and the Keras models take these as keywords
    and keep them as one frozen value; what needs a surrogate (the
    estimator's choice and its demands, the sampling route) is checked by
    `options_for`. Sample sizes may be integer-valued floats (`1e4`), as
    `tfp.vi` accepts them; they are kept as Python ints.

    Raises:
      TypeError, ValueError: for a bad option, naming it.
    """

    sample_size: int = 1
    importance_sample_size: int = 1
    discrepancy_fn: Callable = kl_reverse
    gradient_estimator: Any = None
    sampling: Any = "iid"

    def __post_init__(self):
        for name in ("sample_size", "importance_sample_size"):
            value = checks.check_positive_integer(
                name, getattr(self, name), integral_floats=True
            )
            object.__setattr__(self, name, value)
        checks.check_callable("discrepancy_fn", self.discrepancy_fn)
        check_sampling_kind(self.sampling)

    def options_for(self, surrogate_posterior) -> "LossOptions":
        """`check_options` of these settings against `surrogate_posterior`."""
        return check_options(surrogate_posterior, **self._as_keywords())

    def config_for(
        self, target_log_prob_fn, surrogate_posterior, stopped_surrogate_posterior=None
    ) -> "LossConfig":
        """The checked `LossConfig` of these settings for one problem."""
        return check_arguments(
            target_log_prob_fn,
            surrogate_posterior,
            stopped_surrogate_posterior=stopped_surrogate_posterior,
            **self._as_keywords(),
        )

    def _as_keywords(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The loss's checked options: what stays the same from call to call.

    Made by `check_options`, which checks them against a surrogate and
    decides the estimator and the sampling route once.

    Attributes:
      sample_size: S, a Python int (or an integer `Tensor`).
      importance_sample_size: K, a Python int (or an integer `Tensor`).
      discrepancy_fn: the Csiszar function in log space.
      estimator: the resolved `GradientEstimator` object.
      route: how the estimator's samples are drawn from this kind of
        surrogate (`sampler.Route`, from `sampler.route_for`): iid as
        `tfp.vi`, keeping the pre-image, randomized QMC, discrete couplings,
        or one draw per mixture component.
      sampling: `None` for iid draws (as `tfp.vi`), or the
        `QuasiMonteCarlo` option (`sampling='rqmc'`).
      name: the name scope of the loss's ops.
    """

    sample_size: int | tf.Tensor
    importance_sample_size: int | tf.Tensor
    discrepancy_fn: Callable
    estimator: GradientEstimator
    route: sampler.Route
    sampling: QuasiMonteCarlo | None = None
    name: str = "monte_carlo_variational_loss"


@dataclasses.dataclass(frozen=True)
class Problem:
    """What one call of the loss is about: the target and the surrogate.

    A fit keeps its options and meets a new problem where the problem changes
    (a minibatch's target, a surrogate rebuilt from its parameters, a batch's
    amortized surrogate); see `LossConfig`.
    """

    target_log_prob_fn: Callable
    surrogate_posterior: tfp.distributions.Distribution
    stopped_surrogate_posterior: tfp.distributions.Distribution | None = None


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """One loss: its `problem` and its checked `options` (everything but the seed).

    Their fields read through (`config.sample_size`,
    `config.surrogate_posterior`, ...), named as the arguments of
    `monte_carlo_variational_loss`.
    """

    problem: Problem
    options: LossOptions

    @property
    def target_log_prob_fn(self):
        """The target log-density."""
        return self.problem.target_log_prob_fn

    @property
    def surrogate_posterior(self):
        """The surrogate posterior."""
        return self.problem.surrogate_posterior

    @property
    def stopped_surrogate_posterior(self):
        """The stopped copy of the surrogate, or `None`."""
        return self.problem.stopped_surrogate_posterior

    @property
    def sample_size(self):
        """S, the number of independent draws."""
        return self.options.sample_size

    @property
    def importance_sample_size(self):
        """K, the particles per draw."""
        return self.options.importance_sample_size

    @property
    def discrepancy_fn(self):
        """The Csiszar function in log space."""
        return self.options.discrepancy_fn

    @property
    def estimator(self):
        """The resolved `GradientEstimator`."""
        return self.options.estimator

    @property
    def route(self):
        """The `sampler.Route` the samples are drawn by."""
        return self.options.route

    @property
    def sampling(self):
        """`None` (iid) or the `QuasiMonteCarlo` option."""
        return self.options.sampling

    @property
    def name(self):
        """The name scope of the loss's ops."""
        return self.options.name


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
    problem = check_problem(
        target_log_prob_fn, surrogate_posterior, stopped_surrogate_posterior
    )
    checks.check_seed(seed)
    options = check_options(
        surrogate_posterior,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        use_reparameterization=use_reparameterization,
        gradient_estimator=gradient_estimator,
        name=name,
        sampling=sampling,
    )
    return LossConfig(problem, options)


def check_problem(
    target_log_prob_fn: Callable,
    surrogate_posterior: Any,
    stopped_surrogate_posterior: Any = None,
) -> Problem:
    """The checked `Problem` (a callable target, a surrogate, its stopped copy).

    Raises:
      TypeError, ValueError: naming the argument.
    """
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    checks.check_stopped_surrogate(surrogate_posterior, stopped_surrogate_posterior)
    return Problem(target_log_prob_fn, surrogate_posterior, stopped_surrogate_posterior)


def check_options(
    surrogate_posterior: Any,
    sample_size: Any = 1,
    importance_sample_size: Any = 1,
    discrepancy_fn: Callable = kl_reverse,
    use_reparameterization: bool | None = None,
    gradient_estimator: Any = None,
    name: str | None = None,
    *,
    sampling: Any = "iid",
) -> LossOptions:
    """The loss's options, checked against `surrogate_posterior`; no tensor work.

    Resolves the gradient estimator, checks what its plan needs of the
    surrogate and the sample sizes, and decides the sampling route
    (`sampler.route_for`: from the surrogate's structure, so the options serve
    every surrogate built the same way).

    Raises:
      TypeError, ValueError: naming the argument.
    """
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    # Built once (a DeferredModule builds its distribution): every check and
    # the route read the structure of this one distribution.
    surrogate = as_distribution(surrogate_posterior)
    sample_size = checks.check_positive_integer(
        "sample_size", sample_size, integral_floats=True
    )
    importance_sample_size = checks.check_positive_integer(
        "importance_sample_size", importance_sample_size, integral_floats=True
    )
    checks.check_callable("discrepancy_fn", discrepancy_fn)
    checks.check_name(name)
    estimator = resolve_gradient_estimator(
        gradient_estimator, use_reparameterization, surrogate
    )
    _check_plan(estimator, surrogate, sample_size, importance_sample_size)
    _check_discrepancy(estimator, discrepancy_fn)
    sampling = _check_sampling(
        sampling, estimator, surrogate, sample_size, importance_sample_size
    )
    return LossOptions(
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        estimator=estimator,
        route=sampler.route_for(estimator.plan, surrogate, sampling),
        sampling=sampling,
        name=name or "monte_carlo_variational_loss",
    )


def _check_plan(estimator, surrogate, sample_size, importance_sample_size):
    """What the estimator's plan needs of the surrogate and the sample sizes."""
    plan = estimator.plan
    if plan.layout is Layout.ONE_PER_COMPONENT:
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
    estimator.check_surrogate(surrogate)
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
        surrogate, tfp.distributions.JointDistribution
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
            f"({type(surrogate).__name__}): {reason}. Use "
            "`sampling='iid'`."
        )
    return sampling
