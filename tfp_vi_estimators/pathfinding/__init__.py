"""Pathfinder (Zhang et al., JMLR 2022): Gaussians along an L-BFGS path.

- `api`: `pathfinder` and its `PathfinderResult`.
- `path`: the compiled loop over iterations for a batch of paths.
- `lbfgs`: one L-BFGS iteration; `line_search`: its weak Wolfe line search.
- `inverse_hessian`: the inverse-Hessian estimates and their Gaussians.
- `unconstrained`: a model's posterior on one unconstrained vector.
- `continuation`: a trainable surrogate that starts at Pathfinder's Gaussian.
"""

from tfp_vi_estimators.pathfinding.api import PathfinderResult, pathfinder
from tfp_vi_estimators.pathfinding.continuation import surrogate_from_pathfinder
from tfp_vi_estimators.pathfinding.unconstrained import (
    UnconstrainedTarget,
    unconstrained_target,
)

__all__ = [
    "PathfinderResult",
    "UnconstrainedTarget",
    "pathfinder",
    "surrogate_from_pathfinder",
    "unconstrained_target",
]
