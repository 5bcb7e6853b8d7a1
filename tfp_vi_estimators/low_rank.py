"""Gaussians whose scale is a diagonal plus a low-rank matrix, and a trainable one.

```none
q(z) = N(loc, A A^T),   A = diag(d) + U V^T,   d > 0,  U, V: [D, r]
z = loc + A eps = loc + d * eps + U (V^T eps),   eps ~ N(0, I_D)
log |det A| = sum log d + log |det C|,   C = I_r + V^T diag(d)^-1 U   (r x r)
A^-1 y = diag(d)^-1 y - diag(d)^-1 U C^-1 V^T diag(d)^-1 y          (Woodbury)
```

Sampling costs `O(D r)` per draw, the density `O(D r + r^3)`: a `D x D`
matrix is never formed. This is the family Pathfinder's inverse-Hessian
estimates belong to (`tfp_vi_estimators.pathfinder`, rank `2 * history_size`),
and with `U` and `V` trained, a surrogate between mean-field (`r = 0`) and
full-rank (`r = D`), as Pyro's `AutoLowRankMultivariateNormal` and Stan's
long-standing request (stan-dev/stan#2750). Two square factors `U V^T`
rather than the covariance parameterization `W W^T + diag(d^2)` of [1]: every
Pathfinder Gaussian (whose covariance's low-rank term is indefinite) is
exactly one of these, so a fit can start from it.

The scale is a `LinearOperatorDiagPlusLowRank`, a
`tf.linalg.LinearOperatorLowRankUpdate` whose log-determinant takes the
`r x r` capacitance's QR factor: TensorFlow's own takes a general
determinant, which XLA cannot compile.

#### References

[1] Victor M.-H. Ong, David J. Nott and Michael S. Smith. Gaussian variational
    approximation with a factor covariance structure. Journal of
    Computational and Graphical Statistics, 27(3):465-478, 2018.
"""

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

# TensorFlow's own registration of a LinearOperator as a CompositeTensor (its
# `LinearOperatorLowRankUpdate` uses it): without it the subclass would come
# back from a `tf.function` as its parent class.
from tensorflow.python.ops.linalg import linear_operator as _tf_linear_operator

from tfp_vi_estimators._internal import flattening

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "LinearOperatorDiagPlusLowRank",
    "build_low_rank_surrogate_posterior",
    "diag_plus_low_rank",
    "low_rank_normal",
    "marginal_variance",
]


class LinearOperatorDiagPlusLowRank(tf.linalg.LinearOperatorLowRankUpdate):
    """`diag(d) + U V^T`: a `LinearOperatorLowRankUpdate` that XLA compiles.

    Built by `diag_plus_low_rank(diag, u, v)`. Only the log-determinant
    differs from the parent's: `log |det C|` of the capacitance
    `C = I + V^T diag(d)^-1 U` is the sum of `log |R_ii|` of its QR factor
    (TensorFlow's own is `log |det C|` through `tf.linalg.det`, which has no
    XLA kernel). Solves use the parent's Woodbury identity (`tf.linalg.solve`
    on `C`, compiled by XLA).
    """

    def _log_abs_determinant(self):
        if self._use_cholesky:  # symmetric positive-definite update
            return super()._log_abs_determinant()
        u = tf.convert_to_tensor(self.u)
        v = u if self.v is None else tf.convert_to_tensor(self.v)
        capacitance = self.diag_operator.inverse().add_to_tensor(
            tf.linalg.matmul(v, self.base_operator.solve(u), adjoint_a=True)
        )
        _, r = tf.linalg.qr(capacitance)
        log_abs_det_c = tf.reduce_sum(
            tf.math.log(tf.abs(tf.linalg.diag_part(r))), axis=-1
        )
        return (
            log_abs_det_c
            + self.diag_operator.log_abs_determinant()
            + self.base_operator.log_abs_determinant()
        )


LinearOperatorDiagPlusLowRank = _tf_linear_operator.make_composite_tensor(
    LinearOperatorDiagPlusLowRank, module_name="tfp_vi_estimators"
)


def diag_plus_low_rank(diag, u, v, name="diag_plus_low_rank"):
    """The square operator `diag(diag) + u v^T` (`diag` `[..., D]`, `u`, `v`
    `[..., D, r]`); arguments are kept by reference (variables stay live)."""
    return LinearOperatorDiagPlusLowRank(
        tf.linalg.LinearOperatorDiag(diag, is_non_singular=True),
        u=u,
        v=v,
        is_non_singular=True,
        is_square=True,
        name=name,
    )


def low_rank_normal(loc, diag, u, v, validate_args=False, name=None):
    """`tfd.MultivariateNormalLinearOperator(loc, diag(diag) + u v^T)`."""
    return tfd.MultivariateNormalLinearOperator(
        loc=loc,
        scale=diag_plus_low_rank(diag, u, v),
        validate_args=validate_args,
        name=name or "LowRankMultivariateNormal",
    )


def marginal_variance(scale):
    """`diag(A A^T)` of `A = diag(d) + U V^T` in `O(D r^2)`, `[..., D]`.

    ```none
    (A A^T)_ii = d_i^2 + 2 d_i (U_i . V_i) + U_i (V^T V) U_i^T
    ```
    """
    d = tf.convert_to_tensor(scale.base_operator.diag)
    u = tf.convert_to_tensor(scale.u)
    v = u if scale.v is None else tf.convert_to_tensor(scale.v)
    gram = tf.linalg.matmul(v, v, transpose_a=True)  # [..., r, r]
    quadratic = tf.reduce_sum(tf.linalg.matmul(u, gram) * u, axis=-1)
    return tf.square(d) + 2.0 * d * tf.reduce_sum(u * v, axis=-1) + quadratic


def _check_rank(rank, size):
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"`rank` must be a Python integer; got {rank!r}.")
    if not 1 <= rank <= size:
        raise ValueError(
            f"`rank` must be between 1 and the event size {size}; got {rank}."
        )
    return int(rank)


def _initial_value(name, value, shape, dtype, default):
    if value is None:
        return default
    value = tf.cast(value, dtype)
    if not value.shape.is_compatible_with(shape):
        raise ValueError(
            f"`{name}` must have shape {shape.as_list()} (batch_shape + the flat "
            f"unconstrained event shape); got {value.shape.as_list()}."
        )
    return tf.broadcast_to(value, shape)


def _initial_values(shapes, initial_loc, initial_scale_diag, initial_scale_factors):
    """`(loc, diag, u, v)`, checked; defaults as TFP's affine builder: loc
    uniform on (-2, 2), scale 0.01; `u = 0` and `v` random with columns of
    length about 1, so that the fit starts mean-field and the low-rank
    factor can grow (with `u = v = 0` neither would get a gradient)."""
    vector, factor, dtype, seeds = shapes
    loc = _initial_value(
        "initial_loc",
        initial_loc,
        vector,
        dtype,
        tf.random.stateless_uniform(vector, seeds[0], -2.0, 2.0, dtype),
    )
    diag = _initial_value(
        "initial_scale_diag", initial_scale_diag, vector, dtype, tf.fill(vector, 1e-2)
    )
    diag = tf.cast(diag, dtype)
    if initial_scale_factors is None:
        u = tf.zeros(factor, dtype)
        v = tf.random.stateless_normal(factor, seeds[1], dtype=dtype) / np.sqrt(
            float(factor[-2])
        )
        return loc, diag, u, v
    if (
        not isinstance(initial_scale_factors, (tuple, list))
        or len(initial_scale_factors) != 2
    ):
        raise TypeError(
            "`initial_scale_factors` must be None or a pair (u, v) of "
            f"[..., event_size, rank] tensors; got {initial_scale_factors!r}."
        )
    u, v = (
        _initial_value(f"initial_scale_factors[{i}]", x, factor, dtype, None)
        for i, x in enumerate(initial_scale_factors)
    )
    return loc, diag, u, v


def build_low_rank_surrogate_posterior(
    event_shape: Any,
    rank: int,
    bijector: Any = None,
    batch_shape: Any = (),
    dtype: Any = tf.float32,
    initial_loc: Any = None,
    initial_scale_diag: Any = None,
    initial_scale_factors: Any = None,
    seed: Any = None,
    validate_args: bool = False,
    name: str | None = None,
):
    """A trainable Gaussian surrogate with a diagonal plus rank-`r` scale.

    ```none
    x ~ N(loc, A A^T),   A = diag(softplus(d_raw)) + U V^T      (x: [D], U, V: [D, r])
    z = bijector(unflatten(x))
    ```

    `loc`, `U` and `V` are `tf.Variable`s and the diagonal a
    `tfp.util.TransformedVariable` through `tfb.Softplus`, as in TFP's
    `tfp.experimental.vi` builders; `D` is the total size of the unconstrained
    event (the inverse event shape of `bijector`). With `bijector=None` and a
    vector event the result is the `tfd.MultivariateNormalLinearOperator`
    itself, whose scale is a `LinearOperatorDiagPlusLowRank`: every estimator
    of the library applies, and `DOUBLY_REPARAMETERIZED` reads the stopped
    density from the draws' pre-image (one Woodbury transpose solve, `O(D r)`
    per draw, no second density evaluation; see `_internal/pre_image.py`).
    Otherwise it is a `tfd.TransformedDistribution` of it (structured and
    constrained samples; the stopped density then takes the general route).

    Args:
      event_shape: the posterior's event shape: an int, a shape, or a nested
        structure of shapes (`model.event_shape` of an Inference Gym model or
        a `JointDistribution`), in the constrained space.
      rank: Python integer `1 <= r <= D`.
      bijector: `None`, a `tfb.Bijector`, or a structure of them matching
        `event_shape` (`None` leaves are identities) mapping unconstrained
        values to the posterior's support, e.g. the model's
        `default_event_space_bijector`. Default: `None`.
      batch_shape: batch shape of independent surrogates. Default: `()`.
      dtype: floating dtype of the variables. Default: `tf.float32`.
      initial_loc: `None` or `batch_shape + [D]`, the starting mean (in the
        flat unconstrained space). Default: uniform on `(-2, 2)`.
      initial_scale_diag: `None` or positive `batch_shape + [D]`. Default:
        `0.01`.
      initial_scale_factors: `None` or a pair `(U, V)` of `batch_shape +
        [D, r]`. Default: `U = 0`, `V` random normal over `sqrt(D)`.
      seed: PRNG seed for the random initial values.
      validate_args: passed to the distributions and bijectors.
      name: name of the distribution. Default: `None`
        (`'LowRankMultivariateNormal'`).

    Returns:
      A trainable surrogate: `surrogate.trainable_variables` are `loc`, the
      diagonal's pre-image, `U` and `V`.

    Raises:
      TypeError, ValueError: for a bad argument, naming it, before any
        variable is created.
    """
    shapes = flattening.as_shape_structure(event_shape)
    constraining = flattening.constraining_bijector(bijector)
    unconstrained = (
        shapes if constraining is None else constraining.inverse_event_shape(shapes)
    )
    size = flattening.flat_size(unconstrained)
    rank = _check_rank(rank, size)
    dtype = tf.as_dtype(dtype)
    batch = tf.TensorShape(batch_shape)
    seeds = tfp.random.split_seed(tfp.random.sanitize_seed(seed), 2)
    loc, diag, u, v = _initial_values(
        (batch + [size], batch + [size, rank], dtype, seeds),
        initial_loc,
        initial_scale_diag,
        initial_scale_factors,
    )
    flat = low_rank_normal(
        tf.Variable(loc, name="loc"),
        tfp.util.TransformedVariable(diag, tfb.Softplus(), name="scale_diag"),
        tf.Variable(u, name="scale_u"),
        tf.Variable(v, name="scale_v"),
        validate_args=validate_args,
        name=name,
    )
    chain = [
        b
        for b in (constraining, flattening.unflattening_bijector(unconstrained))
        if b is not None
    ]
    if not chain:
        return flat
    return tfd.TransformedDistribution(
        flat, tfb.Chain(chain, validate_args=validate_args), validate_args=validate_args
    )
