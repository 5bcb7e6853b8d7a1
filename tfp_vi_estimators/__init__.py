"""Monte Carlo variational losses with correct, configurable gradient estimators.

A drop-in for `tfp.vi.monte_carlo_variational_loss`: the same signature,
defaults, samples and loss values, with unbiased doubly reparameterized
gradients, an automatically built stopped surrogate, and score-function
gradients for importance-weighted bounds.
"""

from tfp_vi_estimators import estimators
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
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.fitting import fit_surrogate_posterior
from tfp_vi_estimators.marginal_likelihood import log_marginal_likelihood
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__version__ = "0.1.0"

__all__ = [
    "GradientEstimators",
    "amari_alpha",
    "arithmetic_geometric",
    "chi_square",
    "dual_csiszar_function",
    "elbo_with_analytic_entropy",
    "elbo_with_analytic_kl",
    "estimators",
    "fit_surrogate_posterior",
    "jeffreys",
    "jensen_shannon",
    "kl_forward",
    "kl_reverse",
    "log_marginal_likelihood",
    "log1p_abs",
    "modified_gan",
    "monte_carlo_variational_loss",
    "pearson",
    "squared_hellinger",
    "symmetrized_csiszar_function",
    "t_power",
    "total_variation",
    "triangular",
]
