"""Gradient estimators: each turns log-densities into a surrogate loss.

Each module holds one estimator; `base` holds the interface and shared steps.
"""

from tfp_vi_estimators.estimators.adaptive_score_weight import AdaptiveScoreWeight
from tfp_vi_estimators.estimators.arms import ARMS, DisARM
from tfp_vi_estimators.estimators.base import GradientEstimator
from tfp_vi_estimators.estimators.categorical_disarm import CategoricalDisARM
from tfp_vi_estimators.estimators.doubly_reparameterized import DoublyReparameterized
from tfp_vi_estimators.estimators.gumbel_rao import GumbelRao
from tfp_vi_estimators.estimators.local_disarm import LocalDisARM
from tfp_vi_estimators.estimators.mixed import MixedReparameterization
from tfp_vi_estimators.estimators.mixture import MixtureStickingTheLanding
from tfp_vi_estimators.estimators.relax import RELAX, MLPControlVariate
from tfp_vi_estimators.estimators.reparameterization import Reparameterization
from tfp_vi_estimators.estimators.score_function import ScoreFunction
from tfp_vi_estimators.estimators.structured_score_function import (
    StructuredScoreFunction,
)
from tfp_vi_estimators.estimators.vimco import VIMCO

__all__ = [
    "ARMS",
    "AdaptiveScoreWeight",
    "CategoricalDisARM",
    "DisARM",
    "DoublyReparameterized",
    "GradientEstimator",
    "GumbelRao",
    "LocalDisARM",
    "MLPControlVariate",
    "MixedReparameterization",
    "MixtureStickingTheLanding",
    "RELAX",
    "Reparameterization",
    "ScoreFunction",
    "StructuredScoreFunction",
    "VIMCO",
]
