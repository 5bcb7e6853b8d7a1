"""L-BFGS inverse-Hessian estimates and the Gaussians Pathfinder builds from them.

Pathfinder [1] minimizes `f(x) = -log p(x)` with L-BFGS and, at each iterate
`x_l`, forms the Gaussian `N(x_l - H_l grad f(x_l), H_l)`, where `H_l` is the
L-BFGS inverse-Hessian estimate from the last `m` accepted correction pairs

```none
s_j = x_{j+1} - x_j,   z_j = grad f(x_{j+1}) - grad f(x_j)
accept (s_j, z_j)  iff  s_j^T z_j > eps ||z_j||^2              (curvature)
```

and a diagonal initial estimate `diag(alpha)` updated with every accepted pair
as in Gilbert and Lemarechal [2] ([1], Alg. 3):

```none
a = z^T diag(alpha) z,  b = z^T s,  c = s^T diag(alpha)^-1 s
1 / alpha_new_i = a / (b alpha_i) + z_i^2 / b - a s_i^2 / (b c alpha_i^2)
```

With `S`, `Z` the `d x m` matrices of the pairs (oldest first), the compact
representation of Byrd, Nocedal and Schnabel [3] writes the estimate as a
diagonal plus a rank-`2m` term ([1], Alg. 3):

```none
H = diag(alpha) + beta gamma beta^T
beta  = [diag(alpha) Z, S]                                  (d x 2m)
R     = upper triangle of S^T Z,  eta = diag(S^T Z)         (m x m)
gamma = [[0, -R^-1], [-R^-T, R^-T (diag(eta) + Z^T diag(alpha) Z) R^-1]]
```

and a square root of it (its scale) costs a thin QR and an `2m x 2m` Cholesky
factor ([1], Alg. 4):

```none
Q T  = diag(alpha)^(-1/2) beta                    (thin QR, Q: d x k, k = min(d, 2m))
L    = chol(I + T gamma T^T)
H    = A A^T,   A = diag(sqrt(alpha)) (I + Q (L - I) Q^T)
            = diag(sqrt(alpha)) + U V^T,  U = diag(sqrt(alpha)) Q (L - I),  V = Q
```

so `A` is a `tf.linalg.LinearOperatorLowRankUpdate` (never a dense `d x d`
matrix; `tfp_vi_estimators.low_rank`): matvecs cost `O(d k)`, and `log |det A| = sum log sqrt(alpha) +
sum log diag(L)` (the operator finds it from its `k x k` capacitance
`I + V^T diag(sqrt(alpha))^-1 U = L`).

Every function takes a leading batch of independent paths: `alpha` is
`[B, d]`, the pair history `[B, m, d]` (one row per pair, oldest first, empty
slots all zero) and its `valid` mask `[B, m]`.

#### References

[1] Lu Zhang, Bob Carpenter, Andrew Gelman and Aki Vehtari. Pathfinder:
    Parallel quasi-Newton variational inference. Journal of Machine Learning
    Research, 23(306):1-49, 2022. arXiv:2108.03782.
[2] Jean Charles Gilbert and Claude Lemarechal. Some numerical experiments
    with variable-storage quasi-Newton algorithms. Mathematical Programming,
    45:407-435, 1989.
[3] Richard H. Byrd, Jorge Nocedal and Robert B. Schnabel. Representations of
    quasi-Newton matrices and their use in limited memory methods.
    Mathematical Programming, 63:129-156, 1994.
"""

import typing

import numpy as np
import tensorflow as tf

from tfp_vi_estimators import low_rank

__all__ = [
    "InverseHessianFactors",
    "accept_pair",
    "inverse_hessian_factors",
    "newton_mean",
    "push_pair",
    "scale_operator",
    "update_diagonal",
]


class InverseHessianFactors(typing.NamedTuple):
    """`H = diag(alpha) + beta gamma beta^T`, batched over paths.

    Attributes:
      alpha: `[B, d]`, the diagonal initial estimate.
      beta: `[B, d, 2m]`, `[diag(alpha) Z, S]`.
      gamma: `[B, 2m, 2m]`, symmetric (not positive definite).
    """

    alpha: tf.Tensor
    beta: tf.Tensor
    gamma: tf.Tensor

    def matvec(self, vector):
        """`H v` for `v` `[B, d]`, in `O(d m)`."""
        low_rank = tf.linalg.matvec(
            self.beta,
            tf.linalg.matvec(self.gamma, tf.linalg.matvec(self.beta, vector, True)),
        )
        return self.alpha * vector + low_rank


def _dot(a, b):
    return tf.reduce_sum(a * b, axis=-1)


def accept_pair(s, z):
    """The curvature test of [1], Alg. 3: `s^T z > eps ||z||^2`, per path.

    `eps` is the machine epsilon of the dtype. A pair that fails it (no
    curvature, or a path that did not move) leaves the estimate unchanged.
    """
    eps = np.finfo(s.dtype.as_numpy_dtype).eps
    return _dot(s, z) > eps * _dot(z, z)


def update_diagonal(alpha, s, z, accepted):
    """Gilbert and Lemarechal's diagonal update [2] with the pair `(s, z)`.

    Args:
      alpha: `[B, d]` positive diagonal estimate.
      s: `[B, d]` the newest position difference.
      z: `[B, d]` the newest gradient difference.
      accepted: `[B]` bool, `accept_pair(s, z)`.

    Returns:
      `[B, d]`: the updated diagonal where `accepted` and the update is
      positive and finite, else `alpha` unchanged.
    """
    a = _dot(z * alpha, z)[:, tf.newaxis]
    b = _dot(z, s)[:, tf.newaxis]
    c = _dot(s / alpha, s)[:, tf.newaxis]
    inverse = (
        a / (b * alpha)
        + tf.square(z) / b
        - a * tf.square(s) / (b * c * tf.square(alpha))
    )
    updated = 1.0 / inverse
    usable = accepted & tf.reduce_all(
        tf.math.is_finite(updated) & (updated > 0.0), axis=-1
    )
    return tf.where(usable[:, tf.newaxis], updated, alpha)


def push_pair(history, valid, new, accepted):
    """Append `new` (`[B, d]`) as the newest row of `history` where accepted.

    `history` is `[B, m, d]`, oldest row first; the oldest row drops out. Paths
    that did not accept keep their history unchanged.
    """
    pushed = tf.concat([history[:, 1:], new[:, tf.newaxis]], axis=1)
    pushed_valid = tf.concat([valid[:, 1:], tf.ones_like(valid[:, :1])], axis=1)
    history = tf.where(accepted[:, tf.newaxis, tf.newaxis], pushed, history)
    valid = tf.where(accepted[:, tf.newaxis], pushed_valid, valid)
    return history, valid


def inverse_hessian_factors(alpha, s_history, z_history, valid):
    """The compact representation `(alpha, beta, gamma)` of [3], as in [1].

    Args:
      alpha: `[B, d]` diagonal initial estimate.
      s_history: `[B, m, d]` position differences of the accepted pairs,
        oldest first; empty slots are zero rows.
      z_history: `[B, m, d]` their gradient differences, likewise.
      valid: `[B, m]` bool, which slots hold a pair.

    Returns:
      An `InverseHessianFactors`. Empty slots contribute nothing: their rows of
      `S` and `Z` are zero, and `R` gets a unit diagonal entry there so that it
      stays invertible (its inverse is then block diagonal with the valid
      block's inverse, and the empty columns of `beta` are zero).
    """
    dtype = alpha.dtype
    sz = tf.linalg.matmul(s_history, z_history, transpose_b=True)  # s_i . z_j
    empty = 1.0 - tf.cast(valid, dtype)
    r = tf.linalg.band_part(sz, 0, -1) + tf.linalg.diag(empty)
    eye = tf.eye(tf.shape(r)[-1], batch_shape=tf.shape(r)[:1], dtype=dtype)
    r_inverse = tf.linalg.triangular_solve(r, eye, lower=False)
    alpha_z = z_history * alpha[:, tf.newaxis]  # rows: (diag(alpha) z_j)^T
    inner = tf.linalg.diag(tf.linalg.diag_part(sz)) + tf.linalg.matmul(
        alpha_z, z_history, transpose_b=True
    )
    lower_right = tf.linalg.matmul(
        r_inverse, tf.linalg.matmul(inner, r_inverse), transpose_a=True
    )
    gamma = tf.concat(
        [
            tf.concat([tf.zeros_like(r), -r_inverse], axis=-1),
            tf.concat([-tf.linalg.matrix_transpose(r_inverse), lower_right], -1),
        ],
        axis=-2,
    )
    beta = tf.linalg.matrix_transpose(tf.concat([alpha_z, s_history], axis=1))
    return InverseHessianFactors(alpha, beta, gamma)


def newton_mean(position, objective_gradient, factors):
    """The Gaussian's mean `x - H grad f(x)` (a quasi-Newton step from `x`)."""
    return position - factors.matvec(objective_gradient)


def scale_operator(factors):
    """A square root `A` of `H` (`A A^T = H`) as a low-rank update ([1], Alg. 4).

    Args:
      factors: an `InverseHessianFactors`, batch `[B]`.

    Returns:
      A `tfp_vi_estimators.low_rank.LinearOperatorDiagPlusLowRank` (a
      `tf.linalg.LinearOperatorLowRankUpdate`) with batch shape `[B]`:
      `diag(sqrt(alpha)) + U V^T`, `U = diag(sqrt(alpha)) Q (L - I)`, `V = Q`
      (`[B, d, k]`). Where `I + T gamma T^T` is not numerically positive
      definite its Cholesky factor is NaN, and so is the operator: the caller
      must treat that iterate as unusable.
    """
    sqrt_alpha = tf.sqrt(factors.alpha)
    whitened = factors.beta / sqrt_alpha[..., tf.newaxis]
    q, t = tf.linalg.qr(whitened, full_matrices=False)
    k = tf.shape(t)[-2]
    eye = tf.eye(k, batch_shape=tf.shape(t)[:1], dtype=t.dtype)
    middle = eye + tf.linalg.matmul(
        t, tf.linalg.matmul(factors.gamma, t, transpose_b=True)
    )
    cholesky = tf.linalg.cholesky(0.5 * (middle + tf.linalg.matrix_transpose(middle)))
    u = sqrt_alpha[..., tf.newaxis] * tf.linalg.matmul(q, cholesky - eye)
    return low_rank.diag_plus_low_rank(sqrt_alpha, u, q)
