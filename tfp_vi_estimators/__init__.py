"""Monte Carlo variational losses with correct, configurable gradient estimators.

A drop-in for `tfp.vi.monte_carlo_variational_loss`: the same signature,
defaults, samples and loss values, with unbiased doubly reparameterized
gradients, an automatically built stopped surrogate, and score-function
gradients for importance-weighted bounds.
"""

import importlib

from tensorflow_probability import vi as _tfp_vi

from tfp_vi_estimators import estimators
from tfp_vi_estimators._internal.autograph import exempt_from_autograph
from tfp_vi_estimators.analytic import elbo_with_analytic_entropy, elbo_with_analytic_kl
from tfp_vi_estimators.csiszar import (
    amari_alpha,
    arithmetic_geometric,
    chi_square,
    dual_csiszar_function,
    jeffreys,
    jensen_shannon,
    kl_forward,
    kl_reverse,
    log1p_abs,
    modified_gan,
    pearson,
    squared_hellinger,
    symmetrized_csiszar_function,
    t_power,
    total_variation,
    triangular,
)
from tfp_vi_estimators.csiszar_vimco import csiszar_vimco
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.fitting import (
    fit_surrogate_posterior,
    fit_surrogate_posterior_stateless,
)
from tfp_vi_estimators.low_rank import build_low_rank_surrogate_posterior
from tfp_vi_estimators.marginal_likelihood import log_marginal_likelihood
from tfp_vi_estimators.minibatch import (
    MinibatchTarget,
    SubsampledTarget,
    minibatch_target,
    subsampled_target,
)
from tfp_vi_estimators.pathfinding import (
    PathfinderResult,
    UnconstrainedTarget,
    pathfinder,
    surrogate_from_pathfinder,
    unconstrained_target,
)
from tfp_vi_estimators.psis import (
    importance_resample,
    psis_diagnostic,
    psis_draws,
    psis_expectation,
    psis_smooth,
)
from tfp_vi_estimators.quasi_monte_carlo import QuasiMonteCarlo
from tfp_vi_estimators.training_step import value_and_gradients
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__version__ = "0.1.0"

# Not converted by autograph, as TFP and Keras are not: the package is graph
# code, and a user's target called through it is then treated as tfp.vi
# treats it (see _internal/autograph.py).
exempt_from_autograph(__name__)

# `tfp.vi`'s mutual-information bounds (Barber-Agakov, InfoNCE, Jensen-Shannon,
# Nguyen-Wainwright-Jordan): TFP's own module, as the Csiszar functions are.
mutual_information = _tfp_vi.mutual_information

# Subpackages and modules reachable as attributes (`tfp_vi_estimators.keras_models`)
# without their own import, loaded on first use (PEP 562) so that importing the
# package stays as fast as before.
_LAZY_MODULES = (
    "analytic",
    "csiszar",
    "diagnostics",
    "distributions",
    "estimator_choice",
    "fitting",
    "keras_models",
    "local_cluster",
    "loss_config",
    "low_rank",
    "marginal_likelihood",
    "minibatch",
    "optimizers",
    "pathfinding",
    "problems",
    "psis",
    "quasi_monte_carlo",
    "report",
    "sampler",
    "stopped_surrogate",
    "targets",
    "variational_loss",
)


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))


__all__ = [
    "GradientEstimators",
    "MinibatchTarget",
    "PathfinderResult",
    "QuasiMonteCarlo",
    "SubsampledTarget",
    "UnconstrainedTarget",
    "amari_alpha",
    "arithmetic_geometric",
    "build_low_rank_surrogate_posterior",
    "chi_square",
    "csiszar_vimco",
    "dual_csiszar_function",
    "elbo_with_analytic_entropy",
    "elbo_with_analytic_kl",
    "estimators",
    "fit_surrogate_posterior",
    "fit_surrogate_posterior_stateless",
    "importance_resample",
    "jeffreys",
    "jensen_shannon",
    "kl_forward",
    "kl_reverse",
    "log_marginal_likelihood",
    "log1p_abs",
    "minibatch_target",
    "modified_gan",
    "pathfinder",
    "monte_carlo_variational_loss",
    "mutual_information",
    "pearson",
    "psis_diagnostic",
    "psis_draws",
    "psis_expectation",
    "psis_smooth",
    "squared_hellinger",
    "subsampled_target",
    "surrogate_from_pathfinder",
    "symmetrized_csiszar_function",
    "t_power",
    "total_variation",
    "triangular",
    "unconstrained_target",
    "value_and_gradients",
]
