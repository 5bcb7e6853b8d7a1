"""Whether a surrogate, or each part of a joint surrogate, is reparameterized.

The one place that reads `reparameterization_type`: the estimator choice, the
argument checks, the sampler and the analytic ELBOs all ask here.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.surrogates import as_distribution

__all__ = [
    "is_fully_reparameterized",
    "is_partly_reparameterized",
    "reparameterized_parts",
]


def reparameterized_parts(distribution) -> list[bool]:
    """One flag per part (one for a plain distribution): FULLY_REPARAMETERIZED?"""
    return [
        kind == tfp.distributions.FULLY_REPARAMETERIZED
        for kind in tf.nest.flatten(distribution.reparameterization_type)
    ]


def is_fully_reparameterized(distribution) -> bool:
    """Whether every part of `distribution` is FULLY_REPARAMETERIZED."""
    return all(reparameterized_parts(distribution))


def is_partly_reparameterized(distribution) -> bool:
    """A `JointDistribution` with at least one reparameterized part."""
    joint = isinstance(
        as_distribution(distribution), tfp.distributions.JointDistribution
    )
    return joint and any(reparameterized_parts(distribution))
