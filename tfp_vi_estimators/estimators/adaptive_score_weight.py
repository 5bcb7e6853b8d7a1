"""DOUBLY_REPARAMETERIZED with an adaptive score weight: the variance-minimizing blend.

The score term of the total derivative is a control variate. With `g0` the
total derivative (REPARAMETERIZATION's gradient, `score_weight = 0`) and `g1`
the path derivative (sticking the landing / generalized DReG,
`score_weight = 1`), both unbiased, their difference

```none
d = g0 - g1          E[d] = 0
g_c = g0 - c * d     unbiased for every c that does not depend on this draw
Var(g_c) = Var(g0) - 2 c Cov(g0, d) + c^2 Var(d),   minimal at
c* = Cov(g0, d) / Var(d)
```

`c = 0` is the total derivative and `c = 1` sticking the landing. Which of the
two wins depends on the problem and on the parameter: the path derivative's
extra term `-grad_z log q(z)` cancels `grad_z log p(z)` only where q matches
p. For a Gaussian target with precision `Lambda` and a mean-field q at its
mean, the location gradient of coordinate i has variance
`sum_j Lambda_ij^2 s_j^2` with the total derivative and
`sum_{j != i} Lambda_ij^2 s_j^2 + (Lambda_ii s_i - 1 / s_i)^2` with the path
derivative: the path derivative wins near the mean-field optimum and loses
where q is narrower than `1 / (2 Lambda_ii)`; on posteriors far from Gaussian
either may win. `c*` is estimated from
earlier steps' draws, so every step's gradient stays unbiased: exponential
moving averages of `g0 * d` and `d * d` per parameter element (or summed over
all parameters), then

```none
c_t = clip(m_gd[t-1] / m_dd[t-1], 0, 1)     (0 before the first step)
m_gd[t] = decay m_gd[t-1] + (1 - decay) g0_t * d_t
m_dd[t] = decay m_dd[t-1] + (1 - decay) d_t * d_t
```

Because `E[d] = 0`, `E[g0 * d] = Cov(g0, d)` and `E[d * d] = Var(d)`: the
moments of the step's mean gradients (over the S draws, and over replicas)
estimate `c*` without per-draw gradients. Clipping to [0, 1] keeps `c` between
the two estimators, where the variance is at most the larger endpoint's and,
at the optimum, no larger than the smaller one's.

**Cost.** One target evaluation and one backward pass through the target per
step, as DOUBLY_REPARAMETERIZED, and no density evaluation beyond its: the
loss is REPARAMETERIZATION's (`lw = log p(z) - log q_phi(z)`, with `log q`
as sampled, from the base draw `eps` and the log-det-Jacobian, no inverse).
The step differentiates it with respect to the parameters, the samples `z =
T_phi(eps)` and `log q_phi(z)` in one pass, then gets `d` from the gradient of
`log q_{stop(phi)}` with respect to `z` (read from the pre-image: one
transpose solve for a full-rank Gaussian) and one backward pass through the
sampling map and `log q` only:

```none
g0 = dL/dphi,   u = dL/dz (through the target only),   w = dL/d log q_phi(z)
r  = -w grad_z log q_{stop(phi)}(z)          (the path half of the score term)
d  = vjp_{log q_phi(z)}(w) + vjp_z((1 - s) u + s r)
s  = wt (1 - f2 / f1)   (the path rescaling of DOUBLY_REPARAMETERIZED)
```

The first term is the total derivative of `log q_phi(T_phi(eps))`: the score
`grad_phi log q_phi(z)` at fixed z plus the path `grad_z log q . dz/dphi`,
which `r` removes again.

The weight adapts in the library's training steps (`fit_surrogate_posterior`,
`fit_surrogate_posterior_stateless`, the Keras models and
`tfp_vi_estimators.value_and_gradients`); differentiated by a plain
`tf.GradientTape`, the loss gives the total derivative (`c = 0`).

#### References

[1] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing:
    simple, lower-variance gradient estimators for variational inference.
    NeurIPS 2017. arXiv:1703.09194. (Section 4.2: the scaled score term.)
[2] Tomas Geffner and Justin Domke. Using large ensembles of control variates
    for variational inference. NeurIPS 2018. arXiv:1810.12482.
[3] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison. Doubly
    reparameterized gradient estimators for Monte Carlo objectives. ICLR 2019.
    arXiv:1810.04152.
"""

import dataclasses

import tensorflow as tf

from tfp_vi_estimators._internal.discrepancy import discrepancy_derivatives
from tfp_vi_estimators.estimators.base import log_mean_exp, pathwise_plan
from tfp_vi_estimators.estimators.doubly_reparameterized import (
    DoublyReparameterized,
    path_scale,
)
from tfp_vi_estimators.estimators.gradient_scale import per_sample
from tfp_vi_estimators.estimators.plan import Density, PathGradient

__all__ = ["AdaptiveScoreWeight", "AdaptivelyWeightedDoublyReparameterized"]

_GRANULARITIES = ("element", "total")


@dataclasses.dataclass(frozen=True)
class AdaptiveScoreWeight:
    """How the score weight adapts: `DoublyReparameterized(score_weight=...)`.

    Attributes:
      decay: the moving averages' decay in [0, 1): the weight follows about
        `1 / (1 - decay)` recent steps. Default value: `0.9`.
      granularity: `'element'` (a weight per parameter element) or `'total'`
        (one weight, the moments summed over every parameter). Default value:
        `'element'`.
    """

    decay: float = 0.9
    granularity: str = "element"

    def __post_init__(self):
        decay = self.decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)):
            raise TypeError(f"`decay` must be a float in [0, 1); got {decay!r}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`decay` must be in [0, 1); got {decay}.")
        if self.granularity not in _GRANULARITIES:
            raise ValueError(
                f"`granularity` must be one of {_GRANULARITIES}; got "
                f"{self.granularity!r}."
            )


class AdaptivelyWeightedDoublyReparameterized(DoublyReparameterized):
    """`DoublyReparameterized(score_weight='adaptive')`: see the module docstring.

    Construct it as `DoublyReparameterized(score_weight="adaptive")` or with an
    `AdaptiveScoreWeight` to set the decay or the granularity.
    """

    carries_state = True

    def __init__(self, score_weight="adaptive"):  # noqa: D107 - see the class
        if isinstance(score_weight, str):
            score_weight = AdaptiveScoreWeight()
        self.adaptation = score_weight
        self.score_weight = score_weight
        # Samples as leaves: the step reads the target's partial derivatives.
        self.plan = pathwise_plan(
            Density.SURROGATE,
            Density.STOPPED_PARAMETERS,
            path_gradient=PathGradient.LEAVES,
        )

    def per_draw_loss(self, log_densities, discrepancy_fn, gradient_scale=None):
        """REPARAMETERIZATION's loss: the total derivative's gradient (`c = 0`)."""
        del gradient_scale
        log_weights = log_densities.target - log_densities.surrogate
        return discrepancy_fn(log_mean_exp(log_weights))

    def initial_state(self, sources):
        """Zero moments, `(m_gd, m_dd)` per source (or two scalars for 'total')."""
        if self.adaptation.granularity == "total":
            zero = tf.zeros([], _dtype_of(sources))
            return (zero, zero)
        return tuple((tf.zeros_like(s), tf.zeros_like(s)) for s in sources)

    def gradient_parts(self, tape, scalar, evaluation, sources):
        """`{'total': g0, 'control': d}`, the gradients of `scalar` (docstring)."""
        samples = tf.nest.flatten(evaluation.samples)
        densities = evaluation.log_densities
        grads = tape.gradient(scalar, list(sources) + samples + [densities.surrogate])
        total, upstream, w = grads[: len(sources)], grads[len(sources) : -1], grads[-1]
        if w is None:  # no source reaches the surrogate: no score term
            return {"total": _dense(total), "control": [None] * len(sources)}
        removed = tape.gradient(densities.stopped_parameters, samples, -w)
        scale = _path_scale(evaluation)
        cotangents = [
            _path_cotangent(u, r, scale) for u, r in zip(upstream, removed, strict=True)
        ]
        control = tape.gradient(
            [densities.surrogate] + samples, sources, output_gradients=[w] + cotangents
        )
        return {"total": _dense(total), "control": _dense(control)}

    def combine(self, parts, state):
        """`g0 - c * d` with `c` from `state`, and the moments updated by this step."""
        total, control = parts["total"], parts["control"]
        control = [
            tf.zeros_like(g) if d is None and g is not None else d
            for g, d in zip(total, control, strict=True)
        ]
        weights = self.weights(state, total)
        grads = [
            g if g is None or d is None else g - tf.cast(c, g.dtype) * d
            for g, d, c in zip(total, control, weights, strict=True)
        ]
        return grads, self._updated(state, total, control)

    def weights(self, state, like):
        """The score weight of each source: `clip(m_gd / m_dd, 0, 1)`."""
        if self.adaptation.granularity == "total":
            c = _ratio(*state)
            return [c] * len(like)
        return [_ratio(m_gd, m_dd) for m_gd, m_dd in state]

    def _updated(self, state, total, control):
        """The moments after this step's `g0 * d` and `d * d`."""
        decay = self.adaptation.decay

        def average(m, x):
            return decay * m + (1.0 - decay) * tf.cast(x, m.dtype)

        connected = [
            (g, d) for g, d in zip(total, control, strict=True) if g is not None
        ]
        if self.adaptation.granularity == "total":
            m_gd, m_dd = state
            gd = [tf.reduce_sum(tf.cast(g * d, m_gd.dtype)) for g, d in connected]
            dd = [tf.reduce_sum(tf.cast(d * d, m_dd.dtype)) for _, d in connected]
            return (average(m_gd, tf.add_n(gd)), average(m_dd, tf.add_n(dd)))
        return tuple(
            (m_gd, m_dd) if g is None else (average(m_gd, g * d), average(m_dd, d * d))
            for (m_gd, m_dd), g, d in zip(state, total, control, strict=True)
        )

    def __repr__(self):
        a = self.adaptation
        return (
            "DoublyReparameterized(score_weight=AdaptiveScoreWeight("
            f"decay={a.decay}, granularity={a.granularity!r}))"
        )


def _path_scale(evaluation):
    """DOUBLY_REPARAMETERIZED's per-particle path rescaling `wt (1 - f2 / f1)`."""
    densities = evaluation.log_densities
    log_weights = tf.stop_gradient(densities.target - densities.stopped_parameters)
    f1, f2 = discrepancy_derivatives(
        evaluation.discrepancy_fn, log_mean_exp(log_weights)
    )
    weights = tf.nn.softmax(log_weights, axis=1)
    return path_scale(weights, tf.expand_dims(f1, 1), tf.expand_dims(f2, 1))


def _path_cotangent(u, r, scale):
    """`(1 - s) u + s r` on one sample tensor (`None` parts count as zero)."""
    like = u if u is not None else r
    if like is None:
        return None
    s = tf.cast(per_sample(scale, like), like.dtype)
    u = tf.zeros_like(like) if u is None else u
    r = tf.zeros_like(like) if r is None else r
    return (1.0 - s) * u + s * r


def _ratio(m_gd, m_dd):
    return tf.clip_by_value(tf.math.divide_no_nan(m_gd, m_dd), 0.0, 1.0)


def _dense(gradients):
    return [
        tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
        for g in gradients
    ]


def _dtype_of(sources):
    dtypes = [s.dtype for s in sources if s.dtype.is_floating]
    return dtypes[0] if dtypes else tf.float32
