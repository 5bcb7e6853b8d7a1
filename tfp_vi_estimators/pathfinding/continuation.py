"""From a Pathfinder result to a trainable surrogate that a fit continues.

Pathfinder's Gaussian `N(mu, A A^T)`, `A = diag(a) + U V^T` (rank `k`), becomes
the starting point of a surrogate that `fit_surrogate_posterior` trains:

```none
'low_rank'    N(loc, (diag(d) + U V^T)(.)^T)   loc = mu, d = a, (U, V) = the rank-r
              part: exact for r >= k; for r < k the best rank-r approximation of
              the whitened update diag(a)^-1 U V^T (its truncated SVD)
'mean_field'  N(loc, diag(s)^2)                 s_i = sqrt((A A^T)_ii): the marginals
'full_rank'   N(loc, L L^T)                     L = chol(A A^T)  (D x D, as the family is)
```

`loc` is a `tf.Variable`, the scales `tfp.util.TransformedVariable`s
(`Softplus` for a diagonal, `FillScaleTriL` for a triangular factor), as in
TFP's `tfp.experimental.vi` builders.
"""

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import low_rank

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["KINDS", "surrogate_from_pathfinder"]

KINDS = ("low_rank", "mean_field", "full_rank")


def _chosen_gaussian(result, path):
    """`(loc, scale)` of one path's chosen Gaussian (the best-ELBO path by
    default)."""
    distribution = result.distribution
    if distribution.batch_shape.rank == 0:
        if path is not None:
            raise ValueError(
                f"`path` must be None for a single-path result; got {path!r}."
            )
        return distribution.loc, distribution.scale
    num_paths = distribution.batch_shape[0]
    if path is None:
        path = int(np.argmax(np.asarray(result.best_elbo)))
    if isinstance(path, bool) or not isinstance(path, (int, np.integer)):
        raise TypeError(f"`path` must be None or a Python integer; got {path!r}.")
    if not 0 <= path < num_paths:
        raise ValueError(f"`path` must be in [0, {num_paths}); got {path}.")
    return distribution.loc[path], distribution[path].scale


def _low_rank_factors(scale, rank):
    """`(U_r, V_r)` of `diag(a) + U V^T`: exact for `rank >= k`, else the
    truncated SVD of the whitened update."""
    a = tf.convert_to_tensor(scale.base_operator.diag)
    u, v = tf.convert_to_tensor(scale.u), tf.convert_to_tensor(scale.v)
    k = u.shape[-1]
    if rank >= k:
        pad = [[0, 0], [0, rank - k]]
        extra = tf.random.stateless_normal(
            [v.shape[0], rank - k], seed=(0, 0), dtype=v.dtype
        )
        # New columns of U are zero (A unchanged); those of V random, so that
        # both get gradients once a fit starts.
        return tf.pad(u, pad), tf.concat([v, extra / np.sqrt(v.shape[0])], -1)
    q_u, r_u = tf.linalg.qr(u / a[:, tf.newaxis])
    q_v, r_v = tf.linalg.qr(v)
    s, p, w = tf.linalg.svd(tf.linalg.matmul(r_u, r_v, transpose_b=True))
    u_r = a[:, tf.newaxis] * tf.linalg.matmul(q_u, p[:, :rank] * s[:rank])
    return u_r, tf.linalg.matmul(q_v, w[:, :rank])


def _flat_surrogate(kind, loc, scale, rank):
    if kind == "low_rank":
        size = loc.shape[-1]
        rank = scale.u.shape[-1] if rank is None else rank
        u, v = _low_rank_factors(scale, min(rank, size))
        return low_rank.build_low_rank_surrogate_posterior(
            size,
            min(rank, size),
            dtype=loc.dtype,
            initial_loc=loc,
            initial_scale_diag=scale.base_operator.diag,
            initial_scale_factors=(u, v),
        )
    if kind == "mean_field":
        return tfd.MultivariateNormalDiag(
            loc=tf.Variable(loc, name="loc"),
            scale_diag=tfp.util.TransformedVariable(
                tf.sqrt(low_rank.marginal_variance(scale)),
                tfb.Softplus(),
                name="scale_diag",
            ),
        )
    covariance = scale.matmul(scale.to_dense(), adjoint_arg=True)
    return tfd.MultivariateNormalTriL(
        loc=tf.Variable(loc, name="loc"),
        scale_tril=tfp.util.TransformedVariable(
            tf.linalg.cholesky(covariance),
            tfb.FillScaleTriL(diag_shift=np.array(1e-5, loc.dtype.as_numpy_dtype)),
            name="scale_tril",
        ),
    )


def surrogate_from_pathfinder(
    result: Any,
    kind: str = "low_rank",
    rank: int | None = None,
    path: int | None = None,
    bijector: Any = None,
):
    """A trainable surrogate initialized at a Pathfinder Gaussian.

    Pass it to `tfp_vi_estimators.fit_surrogate_posterior` to continue from
    where Pathfinder stopped (see the module docstring for each `kind`):

    ```python
    result = tfp_vi_estimators.pathfinder(target.target_log_prob_fn, starts)
    surrogate = tfp_vi_estimators.surrogate_from_pathfinder(result, "low_rank")
    tfp_vi_estimators.fit_surrogate_posterior(
        target.target_log_prob_fn, surrogate, optimizer, num_steps=200)
    ```

    Args:
      result: a `PathfinderResult`.
      kind: `'low_rank'`, `'mean_field'` or `'full_rank'`. Default:
        `'low_rank'`.
      rank: for `'low_rank'`, the rank `r` of the surrogate's factor (at most
        the event size). Default: `None`, Pathfinder's own rank
        `min(d, 2 * history_size)` (the surrogate then equals the Gaussian).
      path: for a multi-path result, which path's Gaussian. Default: `None`,
        the one with the largest ELBO estimate.
      bijector: `None`, or a bijector applied to the flat surrogate (e.g.
        `UnconstrainedTarget.bijector`, for a surrogate in the model's
        constrained structure). Default: `None`.

    Returns:
      A `tfd.Distribution` whose `trainable_variables` start at the Gaussian
      (in the flat unconstrained space); a `tfd.TransformedDistribution` of it
      when `bijector` is given.

    Raises:
      TypeError, ValueError: for a bad argument, naming it. Needs values:
        call it eagerly.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}.")
    if rank is not None and (
        isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1
    ):
        raise ValueError(f"`rank` must be None or a positive integer; got {rank!r}.")
    if bijector is not None and not isinstance(bijector, tfb.Bijector):
        raise TypeError(f"`bijector` must be None or a tfb.Bijector; got {bijector!r}.")
    loc, scale = _chosen_gaussian(result, path)
    flat = _flat_surrogate(kind, tf.convert_to_tensor(loc), scale, rank)
    return flat if bijector is None else tfd.TransformedDistribution(flat, bijector)
