"""Pyro-style distributions with custom gradients, as TFP distributions.

* `RelaxedOneHotCategoricalStraightThrough`, `RelaxedBernoulliStraightThrough`:
  hard samples with relaxed (Concrete) gradients.
* `OMTMultivariateNormal`: optimal-mass-transport pathwise gradients.
* `AVFMultivariateNormal`: adaptive-velocity-field control variates.
* `wasserstein2_squared`: closed-form W2^2 between multivariate normals.

Modules `validation`, `linalg_util` and `mvn_base` are internal helpers.
"""

from tfp_vi_estimators.distributions.avf import AVFMultivariateNormal
from tfp_vi_estimators.distributions.omt import OMTMultivariateNormal
from tfp_vi_estimators.distributions.straight_through import (
    RelaxedBernoulliStraightThrough,
    RelaxedOneHotCategoricalStraightThrough,
)
from tfp_vi_estimators.distributions.wasserstein import wasserstein2_squared

__all__ = [
    "AVFMultivariateNormal",
    "OMTMultivariateNormal",
    "RelaxedBernoulliStraightThrough",
    "RelaxedOneHotCategoricalStraightThrough",
    "wasserstein2_squared",
]
