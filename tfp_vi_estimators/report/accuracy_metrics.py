"""How close a fitted surrogate is to a posterior with known moments.

For a Gaussian surrogate in the unconstrained space (every family of
`accuracy_targets`), each coordinate's marginal is `N(m_j, s_j^2)` in closed
form, and the constrained coordinate is `x_j = b_j(u_j)` for an elementwise
bijector `b`. Its moments are one-dimensional Gaussian integrals, computed by
Gauss-Hermite quadrature with `QUADRATURE_NODES` nodes (probabilists' nodes
`t_k` and weights `w_k`, `sum_k w_k = 1`):

```none
E_q[x_j]   = int b_j(m_j + s_j t) phi(t) dt  ~=  sum_k w_k b_j(m_j + s_j t_k)
Var_q[x_j] ~= sum_k w_k (b_j(m_j + s_j t_k) - E_q[x_j])^2
```

exact for polynomials of degree below `2 * QUADRATURE_NODES` and, for the
smooth bijectors of the gym (identity, exp, softplus, sigmoid), to float
rounding at the scales a fit reaches. So, unlike moments estimated from draws
of q, these carry no Monte Carlo error: the error of a fit is measured
exactly, at every step, at the cost of `QUADRATURE_NODES` bijector calls
(`tests/report/test_accuracy_metrics.py` checks them against the closed form of
the log-normal and against 200,000 draws).

The two errors, medians over the `dim` parameters (robust to a few badly
fitted ones, as in issue 21):

```none
standardized mean error = median_j |E_q[x_j] - E_true[x_j]| / sd_true[x_j]
sd log-ratio            = median_j |log(sd_q[x_j] / sd_true[x_j])|
```
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import low_rank

tfd = tfp.distributions

__all__ = [
    "QUADRATURE_NODES",
    "constrained_moments",
    "errors",
    "gaussian_marginals",
    "sd_log_ratio",
    "standardized_mean_error",
]

QUADRATURE_NODES = 32


def standardized_mean_error(mean, true_mean, true_sd):
    """`median_j |mean_j - true_mean_j| / true_sd_j` over the last axis."""
    mean = tf.convert_to_tensor(mean)
    deviation = tf.abs(mean - tf.cast(true_mean, mean.dtype)) / tf.cast(
        true_sd, mean.dtype
    )
    return _median(deviation)


def sd_log_ratio(sd, true_sd):
    """`median_j |log(sd_j / true_sd_j)|` over the last axis."""
    sd = tf.convert_to_tensor(sd)
    return _median(tf.abs(tf.math.log(sd / tf.cast(true_sd, sd.dtype))))


def _median(values):
    return tfp.stats.percentile(values, 50.0, axis=-1, interpolation="midpoint")


def gaussian_marginals(surrogate):
    """`(m, s)`, each `batch_shape + [dim]`: the Normal marginals of a Gaussian
    surrogate (mean-field, `MultivariateNormalLinearOperator`, or a standard
    normal pushed through an affine bijector, as TFP's
    `build_affine_surrogate_posterior` builds). A scale `diag(a) + U V^T`
    (Pathfinder's Gaussians, the low-rank family) gives its marginal
    variances in `O(D r^2)` (`low_rank.marginal_variance`), never through a
    dense `D x D` covariance, which is what TFP's `stddev` forms."""
    scale = getattr(surrogate, "scale", None)
    if (
        isinstance(scale, tf.linalg.LinearOperatorLowRankUpdate)
        and isinstance(scale.base_operator, tf.linalg.LinearOperatorDiag)
        and scale.diag_update is None
    ):
        return surrogate.loc, tf.sqrt(low_rank.marginal_variance(scale))
    try:
        return surrogate.mean(), surrogate.stddev()
    except NotImplementedError:  # TFP has no stddev through a joint bijector
        return _affine_marginals(surrogate)


def _affine_marginals(surrogate):
    """`u = T(eps)` with `T` affine and `eps ~ N(0, I)`: `m = T(0)` and `s_j`
    the norm of row j of T's matrix, whose columns are `T(e_i) - T(0)`."""
    zero = tf.nest.map_structure(
        tf.zeros_like, surrogate.distribution.sample(seed=(0, 0))
    )
    (flat_zero,) = tf.nest.flatten(zero)
    dim = flat_zero.shape[-1]
    units = tf.reshape(tf.eye(dim), [dim] + [1] * (flat_zero.shape.rank - 1) + [dim])
    loc = surrogate.bijector.forward(zero)
    columns = (
        surrogate.bijector.forward(tf.nest.pack_sequence_as(zero, [units + flat_zero]))
        - loc
    )
    return loc, tf.sqrt(tf.reduce_sum(tf.square(columns), axis=0))


def constrained_moments(loc, scale, bijector, num_nodes=QUADRATURE_NODES):
    """Mean and standard deviation of `b(u)`, `u_j ~ N(loc_j, scale_j^2)`.

    Args:
      loc, scale: `Tensor`s `batch_shape + [dim]`.
      bijector: elementwise bijector `b`.
      num_nodes: Gauss-Hermite nodes.

    Returns:
      `(mean, sd)`, each `batch_shape + [dim]`.
    """
    loc = tf.convert_to_tensor(loc)
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    shape = [num_nodes] + [1] * loc.shape.rank
    nodes = tf.constant(nodes.reshape(shape), loc.dtype)
    weights = tf.constant((weights / weights.sum()).reshape(shape), loc.dtype)
    values = bijector.forward(loc + tf.cast(scale, loc.dtype) * nodes)
    mean = tf.reduce_sum(weights * values, axis=0)
    variance = tf.reduce_sum(weights * tf.square(values - mean), axis=0)
    return mean, tf.sqrt(variance)


def errors(surrogate, target):
    """`(standardized mean error, sd log-ratio)` of `surrogate` on `target`
    (a `GymTarget`), each `surrogate.batch_shape`: one per replicate."""
    mean, sd = constrained_moments(*gaussian_marginals(surrogate), target.bijector)
    return (
        standardized_mean_error(mean, target.true_mean, target.true_sd),
        sd_log_ratio(sd, target.true_sd),
    )
