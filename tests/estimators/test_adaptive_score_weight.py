"""DOUBLY_REPARAMETERIZED with an adaptive score weight.

Three claims, each checked on real TFP distributions:

1. The step's gradient is `g0 - c * d` exactly: with the moments set so that
   `c` is 0, 1/2 or 1 it equals `DoublyReparameterized(score_weight=c)` on the
   same draws (same process: float32 rounding of a reordered sum).
2. It is unbiased while `c` adapts: over many steps at fixed parameters the
   mean gradient matches the closed-form ELBO gradient within `Z_TOLERANCE`
   standard errors. `c_t` uses only earlier steps' draws, so the errors
   `g_t - grad` are martingale differences: their mean has variance
   `mean_t Var_t / T`, which the sample variance estimates.
3. Its variance is no larger than the smaller of the two estimators' on the
   same draws (within standard errors): on a target where sticking the
   landing wins (q = p: its gradient is zero) and on one where the total
   derivative wins. For a Gaussian target with precision `Lambda` and a
   mean-field q at the target's mean, the location gradient of coordinate i
   has variance `sum_j Lambda_ij^2 s_j^2` (total derivative) against
   `sum_{j != i} Lambda_ij^2 s_j^2 + (Lambda_ii s_i - 1 / s_i)^2` (path
   derivative): the path derivative wins at the mean-field optimum
   (`s_i^2 = 1 / Lambda_ii`, where the last term vanishes) and loses when q
   is narrower than `1 / (2 Lambda_ii)`, as early in a fit started narrow.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from stat_helpers import Z_TOLERANCE

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimators.adaptive_score_weight import AdaptiveScoreWeight
from tfp_vi_estimators.training_step import loss_and_parts, value_and_gradients
from tfp_vi_estimators.variational_loss import check_arguments, evaluate

tfd, tfb = tfp.distributions, tfp.bijectors

CORRELATED_SCALE_TRIL = np.array([[1.0, 0.0], [1.8, 0.5]], np.float32)


def _problem(loc=(0.3, -0.2), scale=(1.1, 0.7)):
    loc = tf.Variable(np.float32(loc), name="loc")
    scale = tfp.util.TransformedVariable(
        np.float32(scale), tfb.Softplus(), name="scale"
    )
    theta = tf.Variable(0.4, name="theta")
    surrogate = tfd.MultivariateNormalDiag(loc, scale)

    def target(z):
        mean = tf.stack([theta, 1.0])
        return tfd.MultivariateNormalTriL(mean, CORRELATED_SCALE_TRIL).log_prob(z)

    return surrogate, target, [loc, scale.trainable_variables[0], theta]


def _moments_for(estimator, variables, weight):
    """A state whose weight is `weight` for every element."""
    state = estimator.initial_state([tf.convert_to_tensor(v) for v in variables])
    moments = tuple(
        (weight * tf.ones_like(a), tf.ones_like(b)) for a, b in state["moments"]
    )
    return dict(state, moments=moments)


def _full_rank():
    loc = tf.Variable([0.3, -0.2], name="loc")
    tril = tfp.util.TransformedVariable(
        [[1.1, 0.0], [0.4, 0.7]], tfb.FillScaleTriL(), name="tril"
    )
    return tfd.MultivariateNormalTriL(loc, tril)


def _flow():
    shift = tf.Variable([0.3, -0.2], name="shift")
    scale = tf.Variable([1.2, 0.6], name="scale")
    return tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), 2),
        tfb.Chain([tfb.Shift(shift), tfb.Scale(scale), tfb.Sinh()]),
    )


def _maf():
    made = tfb.AutoregressiveNetwork(params=2, hidden_units=[4], event_shape=[2])
    made.build([None, 2])
    rng = np.random.default_rng(0)
    for w in made.weights:
        w.assign(0.3 * rng.standard_normal(w.shape).astype(np.float32))
        if w.constraint is not None:  # the MADE masks: an autoregressive net
            w.assign(w.constraint(w))
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2)), tfb.MaskedAutoregressiveFlow(made)
    )


def _joint():
    loc = tf.Variable(0.3, name="loc")
    scale = tfp.util.TransformedVariable(0.8, tfb.Softplus(), name="scale")
    return tfd.JointDistributionSequential(
        [tfd.Normal(loc, scale), lambda a: tfd.LogNormal(0.5 * a, scale)]
    )


def _joint_target(theta):
    def target(a, b):
        return tfd.Normal(theta, 1.0).log_prob(a) + tfd.LogNormal(a, 1.0).log_prob(b)

    return target


SURROGATES = {
    "mean_field": None,  # _problem's
    "full_rank": _full_rank,
    "flow": _flow,
    "maf": _maf,
    "joint": _joint,
}


def _problem_of(kind):
    surrogate, target, variables = _problem()
    if kind == "mean_field":
        return surrogate, target, variables
    theta = variables[-1]
    surrogate = SURROGATES[kind]()
    if kind == "joint":
        target = _joint_target(theta)
    return surrogate, target, list(surrogate.trainable_variables) + [theta]


@pytest.mark.parametrize("kind", list(SURROGATES))
@pytest.mark.parametrize("discrepancy_fn", [tve.kl_reverse, tve.kl_forward])
@pytest.mark.parametrize("sizes", [(4, 1), (2, 3)])
@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_step_gradient_is_the_blend_of_the_fixed_weights(
    kind, discrepancy_fn, sizes, weight
):
    # Weights 0 and 1 pin both `g0` and `d`; the gradient is linear in c.
    # (A MAF's DoublyReparameterized(score_weight=0) differentiates its
    # inverse, which rounds otherwise: 5e-4 relative here.)
    surrogate, target, variables = _problem_of(kind)
    sample_size, importance_sample_size = sizes
    kwargs = dict(
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        seed=(5, 7),
    )
    adaptive = estimators.DoublyReparameterized(score_weight="adaptive")
    state = _moments_for(adaptive, variables, weight)
    loss, grads, _ = value_and_gradients(
        target, surrogate, variables, state, gradient_estimator=adaptive, **kwargs
    )
    # c = 0 is the total derivative (REPARAMETERIZATION's gradient, the same
    # ops), c = 1 sticking the landing / DReG.
    fixed = (
        estimators.Reparameterization()
        if weight == 0.0
        else estimators.DoublyReparameterized(score_weight=weight)
    )
    want_loss, want, _ = value_and_gradients(
        target, surrogate, variables, gradient_estimator=fixed, **kwargs
    )
    # Same draws, same process: the loss is REPARAMETERIZATION's, the same
    # value; the gradients sum the same terms in another order (float32).
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    for g, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_first_step_is_the_total_derivative_and_moments_move():
    surrogate, target, variables = _problem()
    adaptive = estimators.DoublyReparameterized(score_weight="adaptive")
    kwargs = dict(sample_size=4, seed=(1, 2))
    _, grads, state = value_and_gradients(
        target, surrogate, variables, gradient_estimator=adaptive, **kwargs
    )
    _, want, _ = value_and_gradients(
        target,
        surrogate,
        variables,
        gradient_estimator=tve.GradientEstimators.REPARAMETERIZATION,
        **kwargs,
    )
    for g, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    m_dd = [float(tf.reduce_sum(dd)) for _, dd in state["moments"]]
    assert m_dd[0] > 0 and m_dd[1] > 0  # the surrogate's parameters
    assert m_dd[2] == 0.0  # theta: the score term does not reach the model


def _compiled_steps(surrogate, target, variables, estimator, sample_size):
    """`(g0, g1, g_c, state)` of one step at fixed parameters, compiled."""
    config = check_arguments(
        target, surrogate, sample_size=sample_size, gradient_estimator=estimator
    )

    @tf.function(jit_compile=True, autograph=False)
    def step(seed, state):
        _, parts = loss_and_parts(lambda: evaluate(config, seed), variables)
        grads, state = estimator.combine(parts, state)
        g0 = [tf.identity(g) for g in parts["total"]]
        g1 = [g - d for g, d in zip(parts["total"], parts["control"], strict=True)]
        return g0, g1, grads, state

    return step


def _run(step, state, num_steps, burn_in=0):
    """Per-step flattened gradients of the three estimators, after `burn_in`."""
    rows = {"total": [], "path": [], "adaptive": []}
    for t in range(num_steps + burn_in):
        g0, g1, gc, state = step(tf.constant([3, t], tf.int32), state)
        if t >= burn_in:
            for key, grads in zip(rows, (g0, g1, gc), strict=True):
                rows[key].append(np.concatenate([np.ravel(g) for g in grads]))
    return {k: np.asarray(v, np.float64) for k, v in rows.items()}


def _exact_gradient(surrogate, target_scale_tril, target_mean, variables):
    """The gradient of the negative ELBO of a Gaussian q and a Gaussian target."""
    with tf.GradientTape() as tape:
        target = tfd.MultivariateNormalTriL(target_mean(), target_scale_tril)
        cross = tfd.MultivariateNormalDiag(
            surrogate.mean(), surrogate.stddev()
        ).kl_divergence(target)
    return np.concatenate([np.ravel(g) for g in tape.gradient(cross, variables)])


@pytest.mark.parametrize("granularity", ["element", "total"])
def test_unbiased_while_the_weight_adapts(granularity):
    surrogate, target, variables = _problem()
    variables = variables[:2]  # the surrogate's; theta is fixed here
    estimator = estimators.DoublyReparameterized(
        score_weight=AdaptiveScoreWeight(granularity=granularity)
    )
    state = estimator.initial_state([tf.convert_to_tensor(v) for v in variables])
    step = _compiled_steps(surrogate, target, variables, estimator, sample_size=2)
    rows = _run(step, state, num_steps=3000)
    exact = _exact_gradient(
        surrogate, CORRELATED_SCALE_TRIL, lambda: tf.constant([0.4, 1.0]), variables
    )
    g = rows["adaptive"]
    z = (g.mean(0) - exact) / (g.std(0, ddof=1) / np.sqrt(len(g)))
    assert np.all(np.abs(z) < Z_TOLERANCE), (z, g.mean(0), exact)


def _variance_excess(rows, num_sd=3.0):
    """`tr Var(adaptive) - min(tr Var(total), tr Var(path))`, and its allowance.

    The allowance is `num_sd` standard errors of the paired per-step
    difference of squared deviations (one-sided, about 1e-3 false alarms).
    """

    def squared_deviation(x):
        return np.sum((x - x.mean(0)) ** 2, axis=1)

    adaptive = squared_deviation(rows["adaptive"])
    best = min(("total", "path"), key=lambda k: squared_deviation(rows[k]).mean())
    difference = adaptive - squared_deviation(rows[best])
    se = difference.std(ddof=1) / np.sqrt(len(difference))
    return difference.mean(), num_sd * se, best


def test_variance_is_that_of_sticking_the_landing_where_q_is_p():
    # q = p exactly: the path derivative is zero at every draw, so d = g0 and
    # the moments give c = 1 (to rounding) from the first step on.
    loc = tf.Variable([0.5, -1.0])
    scale = tfp.util.TransformedVariable([0.8, 1.5], tfb.Softplus())
    surrogate = tfd.MultivariateNormalDiag(loc, scale)
    target = tfd.MultivariateNormalDiag([0.5, -1.0], [0.8, 1.5]).log_prob
    variables = [loc, scale.trainable_variables[0]]
    estimator = estimators.DoublyReparameterized(score_weight="adaptive")
    state = estimator.initial_state([tf.convert_to_tensor(v) for v in variables])
    step = _compiled_steps(surrogate, target, variables, estimator, sample_size=2)
    rows = _run(step, state, num_steps=200, burn_in=1)
    _, _, best = _variance_excess(rows)
    assert best == "path"
    # Both are zero up to float32 rounding (terms of size |z| / s^2 < 20):
    # a variance comparison at that level would compare rounding errors.
    np.testing.assert_allclose(rows["path"], 0.0, atol=1e-5)
    np.testing.assert_allclose(rows["adaptive"], 0.0, atol=1e-5)


def test_variance_no_larger_than_the_total_derivative_where_that_wins():
    # A mean-field q at the mean of a correlated Gaussian, 0.4 times as wide as
    # the mean-field optimum (module docstring): the path derivative's
    # -grad log q overshoots grad log p.
    precision = np.linalg.inv(CORRELATED_SCALE_TRIL @ CORRELATED_SCALE_TRIL.T)
    surrogate, target, variables = _problem(
        loc=(0.4, 1.0), scale=tuple(0.4 / np.sqrt(np.diag(precision)))
    )
    variables = variables[:2]
    estimator = estimators.DoublyReparameterized(score_weight="adaptive")
    state = estimator.initial_state([tf.convert_to_tensor(v) for v in variables])
    step = _compiled_steps(surrogate, target, variables, estimator, sample_size=2)
    rows = _run(step, state, num_steps=3000, burn_in=50)
    excess, allowed, best = _variance_excess(rows)
    assert best == "total"
    assert excess <= allowed, (excess, allowed)


def test_bad_adaptation_options_are_refused():
    with pytest.raises(ValueError, match="decay"):
        AdaptiveScoreWeight(decay=1.0)
    with pytest.raises(TypeError, match="decay"):
        AdaptiveScoreWeight(decay="0.9")
    with pytest.raises(ValueError, match="granularity"):
        AdaptiveScoreWeight(granularity="layer")
    with pytest.raises(TypeError, match="adaptive"):
        estimators.DoublyReparameterized(score_weight="adaptve")
