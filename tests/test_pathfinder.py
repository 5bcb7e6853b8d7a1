"""Pathfinder: recovery of a Gaussian, its ELBO and PSIS bookkeeping, bad input.

On a d-dimensional Gaussian target with `history_size >= d`, L-BFGS with its
line search ends in about d iterations and the L-BFGS inverse Hessian is then
the covariance: the last iterate's Gaussian is the target itself, so its ELBO
estimate is 0 to rounding (`log p - log q = 0` at every draw; float64). The
chosen Gaussian is the iterate of largest *estimated* ELBO; an earlier
iterate with true KL `k` wins only if its estimate, with standard error about
`sqrt(2 k / K)` (`Var[log p - log q] ~ 2 KL` near the target), exceeds 0.
With `K = 4000` draws an iterate with `KL >= 0.01` needs a 4.5-sigma
excursion (probability 3e-6), so the chosen Gaussian has `KL < 0.01`, which
bounds the standardized mean error by `sqrt(2 * 0.01) = 0.14`.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE

import tfp_vi_estimators as tve
from tfp_vi_estimators import psis
from tfp_vi_estimators.pathfinding import api

tfd = tfp.distributions
DIM = 8
SEED = (11, 12)
NUM_ELBO_DRAWS = 4000


def _gaussian(dim, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    covariance = a @ a.T / dim + np.diag(np.linspace(0.5, 3.0, dim))
    mean = rng.normal(size=dim)
    return tfd.MultivariateNormalTriL(mean, np.linalg.cholesky(covariance))


def _kl_to(target, q):
    dense = tfd.MultivariateNormalTriL(q.mean(), tf.linalg.cholesky(q.covariance()))
    return float(tfd.kl_divergence(dense, target))


@pytest.fixture(scope="module")
def single():
    target = _gaussian(DIM)
    result = tve.pathfinder(
        target.log_prob,
        np.full(DIM, 3.0),
        num_draws=500,
        history_size=DIM,
        num_elbo_draws=NUM_ELBO_DRAWS,
        max_iterations=50,
        seed=SEED,
    )
    return target, result


@pytest.fixture(scope="module")
def multi():
    # A Student-t target: no Gaussian matches it, so the importance ratios
    # vary (on a Gaussian target they would all be 1 up to rounding, and the
    # Pareto fit would be a fit to rounding noise).
    gaussian = _gaussian(4, seed=1)
    target = tfd.MultivariateStudentTLinearOperator(
        df=np.float64(5.0),
        loc=gaussian.loc,
        scale=tf.linalg.LinearOperatorLowerTriangular(gaussian.scale.to_dense()),
    )
    starts = np.random.default_rng(2).uniform(-2.0, 2.0, size=(3, 4))
    result = tve.pathfinder(target.log_prob, starts, num_draws=200, seed=SEED)
    return target, result


def test_recovers_a_gaussian_in_about_d_iterations(single):
    target, result = single
    assert bool(result.converged) and not bool(result.failed)
    assert int(result.num_iterations) <= DIM + 2
    last = int(result.num_iterations)
    assert abs(float(result.elbo[last])) < 1e-8  # the last Gaussian is the target
    assert np.all(np.isnan(result.elbo[last + 1 :]))
    assert np.isnan(result.elbo[0])
    assert _kl_to(target, result.distribution) < 0.01
    scale = result.distribution.scale
    assert isinstance(scale, tve.low_rank.LinearOperatorDiagPlusLowRank)
    assert scale.u.shape == [DIM, DIM]  # rank min(d, 2m), no dense parameter


def test_elbo_estimate_is_the_loss_on_the_same_draws(single):
    # The documented contract: ELBO_l = -monte_carlo_variational_loss(p, q_l,
    # sample_size=num_elbo_draws, seed=split_seed(seed, 2)[0]).
    target, result = single
    elbo_seed = tfp.random.split_seed(SEED, 2)[0]
    loss = tve.monte_carlo_variational_loss(
        target.log_prob,
        result.distribution,
        sample_size=NUM_ELBO_DRAWS,
        seed=elbo_seed,
    )
    np.testing.assert_allclose(-loss, result.best_elbo, rtol=1e-10, atol=1e-12)
    assert float(result.elbo[int(result.best_iteration)]) == float(result.best_elbo)


def test_evaluation_counts(single):
    _, result = single
    iterations = int(result.num_iterations)
    gradients = int(result.num_gradient_evaluations)
    assert iterations + 1 <= gradients  # the start, and a line search each
    assert int(result.num_target_evaluations) == (
        gradients + NUM_ELBO_DRAWS * iterations + 500
    )
    assert result.draws.shape == [500, DIM] and result.path_draws.shape == [500, DIM]
    assert result.status() == [
        f"path 0: converged after {iterations} iterations; chose iterate "
        f"{int(result.best_iteration)}."
    ]


@pytest.mark.parametrize("kind", ["low_rank", "mean_field", "full_rank"])
def test_surrogate_from_pathfinder_starts_at_the_gaussian(single, kind):
    target, result = single
    q = tve.surrogate_from_pathfinder(result, kind)
    covariance = result.distribution.covariance().numpy()
    np.testing.assert_allclose(q.mean(), result.distribution.mean(), rtol=1e-12)
    if kind == "mean_field":
        np.testing.assert_allclose(q.variance(), np.diag(covariance), rtol=1e-10)
    else:
        np.testing.assert_allclose(q.covariance(), covariance, rtol=1e-8, atol=1e-10)
    losses = tve.fit_surrogate_posterior(
        target.log_prob,
        q,
        tf.keras.optimizers.Adam(1e-3),
        num_steps=3,
        sample_size=4,
        seed=(1, 1),
    )
    assert np.all(np.isfinite(losses))


def test_low_rank_surrogate_of_lower_rank_truncates(single):
    _, result = single
    q = tve.surrogate_from_pathfinder(result, "low_rank", rank=3)
    assert q.scale.u.shape == [DIM, 3]
    exact = result.distribution.covariance().numpy()
    # The best rank-3 approximation of the whitened update: closer than the
    # diagonal alone.
    diagonal = np.diag(result.distribution.scale.base_operator.diag.numpy() ** 2)
    assert np.linalg.norm(q.covariance() - exact) < np.linalg.norm(diagonal - exact)


def test_multi_path_weights_are_psis_of_the_pooled_draws(multi):
    target, result = multi
    assert result.distribution.batch_shape == [3]
    assert result.path_draws.shape == [200, 3, 4]
    log_ratio = target.log_prob(result.path_draws) - result.distribution.log_prob(
        result.path_draws
    )
    smoothed, pareto_k = psis.psis_smooth(tf.reshape(log_ratio, [-1]))
    np.testing.assert_allclose(
        result.log_weights, tf.reshape(smoothed, [200, 3]), rtol=1e-8, atol=1e-10
    )
    np.testing.assert_allclose(result.pareto_k, pareto_k, rtol=1e-8)
    # The draws are resampled from the pooled ones.
    pooled = tf.reshape(result.path_draws, [-1, 4]).numpy()
    distance = np.abs(result.draws.numpy()[:, None] - pooled[None]).sum(-1).min(-1)
    assert np.all(distance == 0.0)
    assert len(result.status()) == 3


def test_resampling_is_multinomial_and_skips_zero_weights():
    # Frequencies of 200,000 draws against the probabilities, within
    # Z_TOLERANCE = 4.5 binomial standard errors (stat_helpers.py).
    probabilities = np.array([0.1, 0.0, 0.6, 0.3])
    log_weights = tf.math.log(tf.constant(probabilities))
    num = 200_000
    indices = api._multinomial(log_weights, num, tf.constant([3, 4])).numpy()
    counts = np.bincount(indices, minlength=4)
    assert counts[1] == 0
    standard_error = np.sqrt(num * probabilities * (1 - probabilities))
    nonzero = probabilities > 0
    z = (counts - num * probabilities)[nonzero] / standard_error[nonzero]
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def _bad(**overrides):
    arguments = dict(
        target_log_prob_fn=_gaussian(3).log_prob, initial_position=np.zeros(3)
    )
    arguments.update(overrides)
    return lambda: tve.pathfinder(**arguments)


@mode_parameter
@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(target_log_prob_fn="p"), TypeError, "target_log_prob_fn"),
        (dict(initial_position=np.zeros(3, np.int32)), TypeError, "initial_position"),
        (dict(initial_position=np.zeros((2, 2, 3))), ValueError, "initial_position"),
        (dict(initial_position=np.zeros(0)), ValueError, "initial_position"),
        (dict(initial_position=[0.0, np.inf, 0.0]), ValueError, "finite"),
        (dict(num_draws=1), ValueError, "num_draws"),
        (dict(history_size=0), ValueError, "history_size"),
        (dict(max_iterations=2.0), TypeError, "max_iterations"),
        (dict(num_elbo_draws=True), TypeError, "num_elbo_draws"),
        (dict(gradient_tolerance=-1.0), ValueError, "gradient_tolerance"),
        (dict(f_absolute_tolerance="x"), TypeError, "f_absolute_tolerance"),
        (dict(jit_compile="yes"), TypeError, "jit_compile"),
        (dict(seed=(1, 2, 3)), ValueError, "seed"),
    ],
)
def test_bad_arguments_fail_before_any_tensor_work(mode, overrides, error, match):
    assert_raises(mode, _bad(**overrides), error, match)


def test_target_not_finite_at_the_start_is_an_error():
    def target(x):
        return tf.where(x[:, 0] > 1.0, np.nan, -tf.reduce_sum(x**2, -1))

    starts = np.array([[0.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match=r"finite.*path\(s\) \[1\]"):
        tve.pathfinder(target, starts)


def test_target_of_the_wrong_shape_or_dtype_is_an_error():
    with pytest.raises(ValueError, match="one log-density per point"):
        tve.pathfinder(lambda x: tf.reduce_sum(x), np.zeros(2))
    with pytest.raises(ValueError, match="one log-density per point"):
        tve.pathfinder(lambda x: tf.cast(tf.reduce_sum(x, -1), tf.float32), np.zeros(2))


def _nan_beyond_the_start(x):
    """`-|x|^2 / 2` at the start (1, 1, 1), NaN everywhere else: the line
    search finds no point it can use."""
    away = tf.reduce_any(tf.not_equal(x, 1.0), axis=-1)
    value = -0.5 * tf.reduce_sum(x**2, -1)
    return tf.where(away, tf.constant(np.nan, x.dtype), value)


@pytest.mark.slow
def test_a_failed_line_search_stops_the_path_and_says_so():
    result = tve.pathfinder(_nan_beyond_the_start, np.ones(3), seed=SEED)
    assert bool(result.failed) and not bool(result.converged)
    assert int(result.num_iterations) == 0
    assert int(result.best_iteration) == 0
    assert "line search" in result.status()[0]
    assert "no usable Gaussian" in result.status()[0]


@pytest.mark.slow
def test_in_a_function_a_non_finite_start_fails_that_path_only():
    target = _gaussian(2, seed=3)

    def log_prob(x):
        return tf.where(
            x[:, 0] > 5.0, tf.constant(-np.inf, x.dtype), target.log_prob(x)
        )

    starts = np.array([[0.5, 0.5], [6.0, 0.0]])
    result = tf.function(lambda x: tve.pathfinder(log_prob, x, seed=SEED))(starts)
    np.testing.assert_array_equal(result.failed, [False, True])
    np.testing.assert_array_equal(result.num_iterations[1], 0)
    assert np.all(np.exp(result.log_weights[:, 1]) == 0.0)  # no weight on it


@pytest.mark.slow
def test_tf_function_equals_eager_and_xla_recovers(single):
    target, eager = single

    def run():
        return tve.pathfinder(
            target.log_prob,
            np.full(DIM, 3.0),
            num_draws=500,
            history_size=DIM,
            num_elbo_draws=NUM_ELBO_DRAWS,
            max_iterations=50,
            seed=SEED,
        )

    graph = tf.function(run, autograph=False)()
    np.testing.assert_allclose(graph.draws, eager.draws, rtol=1e-12)
    np.testing.assert_array_equal(graph.best_iteration, eager.best_iteration)
    # XLA draws other random numbers for the same stateless seed: compare
    # with the target instead.
    xla = tf.function(run, autograph=False, jit_compile=True)()
    assert int(xla.num_iterations) <= DIM + 2
    assert _kl_to(target, xla.distribution) < 0.01
    with_flag = tve.pathfinder(
        target.log_prob,
        np.full(DIM, 3.0),
        history_size=DIM,
        num_elbo_draws=NUM_ELBO_DRAWS,
        jit_compile=True,
    )
    assert _kl_to(target, with_flag.distribution) < 0.01


def test_unconstrained_target_of_a_gym_model():
    gym = pytest.importorskip("inference_gym.using_tensorflow")
    model = gym.targets.EightSchools()
    target = tve.unconstrained_target(model)
    assert target.event_size == 10 and target.dtype == tf.float32
    x = target.initial_positions(3, seed=(1, 2))
    assert x.shape == [3, 10] and np.all(np.abs(x) < 2.0)
    structured = target.bijector.forward(x)
    assert structured["school_effects"].shape == [3, 8]
    np.testing.assert_allclose(
        target.target_log_prob_fn(x), model.unnormalized_log_prob(structured), rtol=1e-6
    )


def test_unconstrained_target_of_a_pinned_joint_distribution():
    # A positive scale and a vector of effects: log p~(x) = log p(T(x)) +
    # log |det J_T(x)|, with T = exp on the scale (TFP's default bijector for
    # a LogNormal is Exp) and identity on the effects.
    model = tfd.JointDistributionNamed(
        dict(
            scale=tfd.LogNormal(np.float64(0.0), np.float64(1.0)),
            effects=lambda scale: tfd.Sample(tfd.Normal(np.float64(0.0), scale), 3),
            y=lambda effects: tfd.Independent(tfd.Normal(effects, np.float64(1.0)), 1),
        )
    ).experimental_pin(y=np.array([1.0, -0.5, 2.0]))
    target = tve.unconstrained_target(model)
    assert target.event_size == 4 and target.dtype == tf.float64
    x = np.array([[0.3, 0.1, -0.2, 0.5]])
    values = target.bijector.forward(x)
    # The flat vector follows tf.nest's order (dict keys sorted): effects, scale.
    np.testing.assert_allclose(values["effects"], x[:, :3])
    scale = float(values["scale"][0])
    np.testing.assert_allclose(scale, np.exp(0.5), rtol=1e-12)
    expected = model.unnormalized_log_prob(values) + np.log(scale)
    np.testing.assert_allclose(target.target_log_prob_fn(x), expected, rtol=1e-12)


def test_unconstrained_target_refuses_other_objects():
    with pytest.raises(TypeError, match="`model`"):
        tve.unconstrained_target(object())
