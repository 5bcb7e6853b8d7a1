"""Randomized quasi-Monte Carlo sampling: the same points per seed, unbiased,
and lower gradient variance than iid sampling, falling faster than 1/S.

Statistical tolerances are stated in standard errors computed from the same
draws: 4 standard errors for means (a two-sided normal tail of 6e-5 per
coordinate), and for variances the normal approximation of the sampling
distribution of a variance estimate from R draws, whose logarithm has
standard error `sqrt(2 / (R - 1))`.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from stat_helpers import Z_TOLERANCE

import tfp_vi_estimators as tve
from tfp_vi_estimators._internal import quasi_monte_carlo as internal_qmc
from tfp_vi_estimators.quasi_monte_carlo import (
    QuasiMonteCarlo,
    randomized_sobol_normal,
    variance_by_sample_size,
)

tfd, tfb = tfp.distributions, tfp.bijectors
DIM = 10


def _target():
    """A correlated 10-d Gaussian target, normalized."""
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(DIM, DIM)) / 3.0
    return tfd.MultivariateNormalTriL(
        rng.normal(size=DIM), np.linalg.cholesky(factor @ factor.T + np.eye(DIM))
    )


def _mean_field():
    return tfd.Independent(
        tfd.Normal(tf.Variable(np.full(DIM, 0.3)), tf.Variable(np.full(DIM, 0.8))),
        reinterpreted_batch_ndims=1,
    )


def _full_rank():
    return tfd.MultivariateNormalTriL(
        tf.Variable(np.full(DIM, 0.3)), tf.Variable(0.8 * np.eye(DIM))
    )


def _gradients(target, q, sampling, sample_size, num_repeats, **kwargs):
    """`[R, num_parameters]` gradients of the loss, one row per seed `(1, r)`."""
    variables = q.trainable_variables

    @tf.function
    def gradient(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target.log_prob,
                q,
                sample_size=sample_size,
                sampling=sampling,
                seed=seed,
                **kwargs,
            )
        return tf.concat(
            [tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0
        )

    return np.stack([gradient(tf.constant([1, r])).numpy() for r in range(num_repeats)])


def _exact_gradient(target, q):
    """The ELBO's exact gradient: the loss is KL(q || p) minus nothing (p normalized)."""
    if isinstance(q, tfd.Independent):  # KL is registered for the MVN form
        q = tfd.MultivariateNormalDiag(q.distribution.loc, q.distribution.scale)
    with tf.GradientTape() as tape:
        kl = tfd.kl_divergence(q, target)
    grads = tape.gradient(kl, q.trainable_variables)
    return np.concatenate([np.reshape(g, [-1]) for g in grads])


def test_same_seed_same_points_and_each_point_is_standard_normal():
    first = randomized_sobol_normal(64, [3], (4, 2), tf.float64)
    np.testing.assert_array_equal(
        first, randomized_sobol_normal(64, [3], (4, 2), tf.float64)
    )
    assert not np.allclose(first, randomized_sobol_normal(64, [3], (4, 3), tf.float64))
    # Point 5 over 400 randomizations: mean 0 and variance 1 (4 standard errors).
    draws = np.stack(
        [randomized_sobol_normal(64, [3], (r, 9), tf.float64)[5] for r in range(400)]
    )
    np.testing.assert_array_less(np.abs(draws.mean(0)), 4 / np.sqrt(400))
    np.testing.assert_array_less(np.abs(draws.var(0, ddof=1) - 1), 4 * np.sqrt(2 / 399))


def test_points_are_pushed_through_the_surrogates_own_reparameterization():
    q = _full_rank()
    seed = (3, 8)
    sample_seed, _ = tfp.random.split_seed(seed, 2)
    captured = []

    def target(x):
        captured.append(x)
        return _target().log_prob(x)

    tve.monte_carlo_variational_loss(
        target, q, sample_size=8, sampling="rqmc", seed=seed
    )
    noise = randomized_sobol_normal(8, [DIM], sample_seed, tf.float64)
    expected = q.loc + tf.linalg.matvec(q.scale.to_dense(), noise)
    np.testing.assert_allclose(captured[0], expected, rtol=1e-12, atol=1e-12)


def test_unbiased_and_ten_times_lower_variance_at_sample_size_64():
    """Mean-field surrogate of a 10-d Gaussian, R = 64 seeds per sampling.

    Unbiased: the RQMC and iid mean gradients each lie within 4 standard
    errors of the exact gradient (from the analytic KL), per coordinate.
    Variance: observed ratio about 20 in trial runs; log-ratio standard error
    `sqrt(2 * 2 / 63) = 0.25`, so a 10x bound sits about 3 standard errors
    below the expected value.
    """
    target, q = _target(), _mean_field()
    exact = _exact_gradient(target, q)
    iid = _gradients(target, q, "iid", 64, 64)
    rqmc = _gradients(target, q, QuasiMonteCarlo(), 64, 64)
    for draws in (iid, rqmc):
        standard_error = draws.std(0, ddof=1) / np.sqrt(len(draws))
        np.testing.assert_array_less(np.abs(draws.mean(0) - exact), 4 * standard_error)
    ratio = np.sum(iid.var(0, ddof=1)) / np.sum(rqmc.var(0, ddof=1))
    assert ratio >= 10.0, ratio


def test_doubly_reparameterized_with_importance_samples_is_unbiased():
    """DReG at K = 2 (IWAE bound): RQMC's mean gradient against iid's, 4 SE."""
    target, q = _target(), _full_rank()
    kwargs = dict(
        importance_sample_size=2,
        gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
    )
    iid = _gradients(target, q, "iid", 8, 24, **kwargs)
    rqmc = _gradients(target, q, "rqmc", 8, 24, **kwargs)
    standard_error = np.sqrt(
        iid.var(0, ddof=1) / len(iid) + rqmc.var(0, ddof=1) / len(rqmc)
    )
    np.testing.assert_array_less(
        np.abs(iid.mean(0) - rqmc.mean(0)), 4 * standard_error + 1e-12
    )


def _dreg_loss_and_gradient(target, q):
    def loss(seed):
        with tf.GradientTape() as tape:
            value = tve.monte_carlo_variational_loss(
                target.log_prob,
                q,
                sample_size=4,
                importance_sample_size=2,
                gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
                sampling="rqmc",
                seed=seed,
            )
        return value, tape.gradient(value, q.trainable_variables)

    return loss


def test_same_seed_same_loss_in_eager_and_graph():
    loss = _dreg_loss_and_gradient(_target(), _full_rank())
    seed = tf.constant([5, 6])
    eager, graph = loss(seed), tf.function(loss)(seed)
    np.testing.assert_array_equal(eager[0], loss(seed)[0])
    np.testing.assert_allclose(graph[0], eager[0], rtol=1e-10)
    for a, b in zip(graph[1], eager[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_runs_under_xla_with_the_eager_points():
    """The random bits are Philox by name, so XLA draws the same points as
    eager; only XLA's own `ndtri` and fusion reorder float64 rounding (a few
    ulps per op, far below rtol = 1e-9)."""
    eager_loss = _dreg_loss_and_gradient(_target(), _full_rank())
    loss = tf.function(eager_loss, jit_compile=True)
    value, grads = loss(tf.constant([5, 6]))
    np.testing.assert_array_equal(value, loss(tf.constant([5, 6]))[0])
    eager_value, eager_grads = eager_loss(tf.constant([5, 6]))
    np.testing.assert_allclose(value, eager_value, rtol=1e-9)
    for a, b in zip(grads, eager_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "surrogate, estimator, match",
    [
        (
            lambda: tfd.JointDistributionSequential(
                [
                    tfd.MixtureSameFamily(
                        tfd.Categorical(logits=[0.0, 1.0]),
                        tfd.Normal(tf.Variable([0.0, 1.0]), 1.0),
                        reparameterize=True,
                    )
                ]
            ),
            None,
            "\\(or transforms\\) a MixtureSameFamily",
        ),
        (
            lambda: tfd.MixtureSameFamily(
                tfd.Categorical(logits=[0.0, 1.0]),
                tfd.MultivariateNormalTriL(tf.Variable([[0.0], [1.0]]), [[[1.0]]]),
                reparameterize=True,
            ),
            None,
            "scalar or Independent components; use estimators.MixtureSticking",
        ),
        (
            lambda: tfd.MixtureSameFamily(
                tfd.Categorical(logits=[0.0, 1.0]), tfd.Normal([0.0, 1.0], 1.0)
            ),
            tve.GradientEstimators.SCORE_FUNCTION,
            "assume independent draws",
        ),
        (
            lambda: tfd.Normal(tf.Variable(0.0), 1.0),
            tve.GradientEstimators.SCORE_FUNCTION,
            "serves REPARAMETERIZATION",
        ),
        (
            lambda: tfd.Gamma(tf.Variable(2.0), 1.0),
            tve.GradientEstimators.REPARAMETERIZATION,
            "cannot serve",
        ),
    ],
)
def test_surrogates_and_estimators_it_cannot_serve_are_refused(
    surrogate, estimator, match
):
    with pytest.raises(ValueError, match=match) as refused:
        tve.monte_carlo_variational_loss(
            lambda z: -(z**2),
            surrogate(),
            gradient_estimator=estimator,
            sampling="rqmc",
        )
    assert "sampling='iid'" in str(refused.value)  # says what to use instead


def test_bad_sampling_values_are_refused_before_tensor_work():
    q = tfd.Normal(tf.Variable(0.0), 1.0)
    with pytest.raises(ValueError, match="`sampling` must be"):
        tve.monte_carlo_variational_loss(lambda z: -(z**2), q, sampling="sobol")
    with pytest.raises(ValueError, match="Python integer `sample_size`"):
        tve.monte_carlo_variational_loss(
            lambda z: -(z**2), q, sample_size=tf.constant(4), sampling="rqmc"
        )


@pytest.mark.slow
def test_variance_falls_faster_than_one_over_sample_size():
    """Full-rank surrogate, S = 8..128, R = 30 seeds per point.

    Least-squares slope of log variance on log S: each log variance has
    standard error `sqrt(2 / 29) = 0.26`, the slope `0.26 / sqrt(sum (log S -
    mean)^2) = 0.12`. RQMC's slope must be below -1 by more than 4 standard
    errors (about -2 is expected for smooth integrands); iid's within 4 of -1.
    """
    target, q = _target(), _full_rank()
    result = variance_by_sample_size(
        target.log_prob, q, sample_sizes=(8, 16, 32, 64, 128), num_repeats=30
    )
    log_s = np.log(result["sample_sizes"])
    slope_se = np.sqrt(2 / 29) / np.sqrt(np.sum((log_s - log_s.mean()) ** 2))
    rqmc_slope = np.polyfit(log_s, np.log(result["rqmc"]), 1)[0]
    iid_slope = np.polyfit(log_s, np.log(result["iid"]), 1)[0]
    assert rqmc_slope < -1 - 4 * slope_se, rqmc_slope
    assert abs(iid_slope + 1) < 4 * slope_se, iid_slope


# Joint and mixture surrogates. Unbiasedness is checked against iid sampling
# on the same problem (two-sample z-scores of the mean gradients, per
# coordinate, within Z_TOLERANCE = 4.5 standard errors: see stat_helpers).
# Variance: with R seeds per sampling, the log of each total variance has
# standard error about sqrt(2 / (R - 1)), their ratio sqrt(4 / (R - 1)); RQMC
# must beat iid by more than 4 of those (R = 32: a ratio above 4.2; trial runs
# gave 8 to 28 at S = 64).
REPEATS = 32
MIN_VARIANCE_RATIO = float(np.exp(4 * np.sqrt(4 / (REPEATS - 1))))


def _variable(value):
    return tf.Variable(np.asarray(value, np.float64))


def _dependent_joint(v=None):
    """Two 5-d parts; the second's location depends on the first's draw."""
    if v is None:
        v = [_variable(np.full(5, x)) for x in (0.3, 0.8, 0.1, 0.7)]

    def model():
        a = yield tfd.JointDistributionCoroutine.Root(
            tfd.Independent(tfd.Normal(v[0], v[1]), 1)
        )
        yield tfd.Independent(tfd.Normal(0.5 * a + v[2], v[3]), 1)

    return tfd.JointDistributionCoroutine(model)


def _factored_joint():
    """TFP's builder: a JointMap of bijectors over independent normals."""
    return tfp.experimental.vi.build_factored_surrogate_posterior(
        event_shape={"rate": [3], "x": [2]},
        bijector={"rate": tfb.Softplus(), "x": tfb.Identity()},
        dtype=tf.float64,
        seed=(4, 2),
    )


def _positive_target(rate, x):
    return tfd.JointDistributionNamed(
        dict(
            rate=tfd.Independent(tfd.Gamma(np.array([2.0, 3.0, 4.0]), 1.5), 1),
            x=tfd.Independent(tfd.Normal(np.array([1.0, -1.0]), [0.5, 2.0]), 1),
        )
    ).log_prob(dict(rate=rate, x=x))


@tfd.JointDistributionCoroutineAutoBatched
def _chain_prior():
    a = yield tfd.Normal(np.float64(0.0), 1.0, name="a")
    yield tfd.Normal(a, np.float64(1.0), name="b")


def _chain_target(a, b):
    return tfd.Normal(np.float64(1.0), 1.0).log_prob(a) + tfd.Normal(
        a, np.float64(0.5)
    ).log_prob(b)


def _mixture(reparameterize=True):
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=_variable([0.0, 0.4])),
        tfd.Independent(
            tfd.Normal(
                _variable([[-1.0, 0.5], [1.0, -0.5]]),
                _variable([[0.7, 0.9], [0.6, 1.1]]),
            ),
            1,
        ),
        reparameterize=reparameterize,
    )


_BIMODAL = tfd.MixtureSameFamily(
    tfd.Categorical(logits=np.array([0.2, 0.0])),
    tfd.Independent(tfd.Normal(np.array([[-1.5, 1.0], [1.5, -1.0]]), 0.8), 1),
)


def _joint_target_of_ten(*parts):
    return _target().log_prob(tf.concat(parts, -1))


PROBLEMS = {
    "dependent_joint": (_dependent_joint, _joint_target_of_ten, None),
    "factored_joint": (_factored_joint, _positive_target, None),
    "vectorized_joint_asvi": (
        lambda: tfp.experimental.vi.build_asvi_surrogate_posterior(
            _chain_prior, seed=(4, 2)
        ),
        _chain_target,
        None,
    ),
    "mixture": (_mixture, _BIMODAL.log_prob, None),
    "mixture_sticking_the_landing": (
        lambda: _mixture(reparameterize=False),
        _BIMODAL.log_prob,
        tve.estimators.MixtureStickingTheLanding(),
    ),
}


def _gradient_draws(q, target_log_prob_fn, estimator, sampling, sample_size=64):
    """`[REPEATS, num_parameters]` gradients, one row per seed `(1, r)`."""

    @tf.function
    def gradient(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target_log_prob_fn,
                q,
                sample_size=sample_size,
                gradient_estimator=estimator,
                sampling=sampling,
                seed=seed,
            )
        grads = tape.gradient(loss, q.trainable_variables)
        return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    return np.stack([gradient(tf.constant([1, r])).numpy() for r in range(REPEATS)])


def _check_unbiased_with_lower_variance(name):
    make, target_log_prob_fn, estimator = PROBLEMS[name]
    q = make()  # one surrogate for both samplings (builders initialize randomly)
    iid, rqmc = (
        _gradient_draws(q, target_log_prob_fn, estimator, sampling)
        for sampling in ("iid", "rqmc")
    )
    standard_error = np.sqrt((iid.var(0, ddof=1) + rqmc.var(0, ddof=1)) / REPEATS)
    np.testing.assert_array_less(
        np.abs(iid.mean(0) - rqmc.mean(0)), Z_TOLERANCE * standard_error
    )
    ratio = np.sum(iid.var(0, ddof=1)) / np.sum(rqmc.var(0, ddof=1))
    assert ratio > MIN_VARIANCE_RATIO, ratio


@pytest.mark.parametrize("name", ["dependent_joint", "mixture_sticking_the_landing"])
def test_joint_and_mixture_surrogates_unbiased_with_lower_variance(name):
    _check_unbiased_with_lower_variance(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["factored_joint", "vectorized_joint_asvi", "mixture"])
def test_builders_and_reparameterized_mixtures_unbiased_with_lower_variance(name):
    _check_unbiased_with_lower_variance(name)


def test_each_part_of_a_joint_takes_its_own_coordinates():
    """Part p is pushed from coordinates d_1 + ... + d_{p-1} onwards, through
    its distribution given its parents' values."""
    loc, scale, shift, child_scale = [
        _variable(np.linspace(0.1, 0.9, 5) * x) for x in (1.0, 2.0, -1.0, 0.5)
    ]
    q = _dependent_joint([loc, scale, shift, child_scale])
    samples, _, _ = internal_qmc.sample(q, 8, (2, 5))
    noise = randomized_sobol_normal(8, [10], (2, 5), tf.float64)
    a = noise[:, :5] * scale + loc
    np.testing.assert_allclose(samples[0], a, rtol=1e-12)
    np.testing.assert_allclose(
        samples[1], noise[:, 5:] * child_scale + (0.5 * a + shift), rtol=1e-12
    )


def test_mixture_component_counts_are_stratified():
    """Over a net of N = 64 points each component gets N pi_c draws up to 2 (a
    property of every randomization: the first coordinate has one point in
    each interval of length 1/N); iid counts are binomial, sd ~ 3.5 here."""
    weights = np.array([0.2, 0.5, 0.3])
    q = tfd.MixtureSameFamily(
        tfd.Categorical(probs=weights),
        tfd.Normal(np.array([0.0, 10.0, 20.0]), 1e-3),
        reparameterize=True,
    )
    draw = tf.function(lambda seed: internal_qmc.sample(q, 64, seed)[0])
    for r in range(10):
        samples = draw(tf.constant([r, 1]))
        counts = np.bincount(np.round(samples.numpy() / 10).astype(int), minlength=3)
        np.testing.assert_array_less(np.abs(counts - 64 * weights), 2.0 + 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_joint_and_mixture_surrogates_run_under_xla(name):
    make, target_log_prob_fn, estimator = PROBLEMS[name]
    q = make()

    @tf.function(jit_compile=True)
    def loss_and_gradients(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target_log_prob_fn,
                q,
                sample_size=8,
                gradient_estimator=estimator,
                sampling="rqmc",
                seed=seed,
            )
        return loss, tape.gradient(loss, q.trainable_variables)

    value, grads = loss_and_gradients(tf.constant([5, 6]))
    np.testing.assert_array_equal(value, loss_and_gradients(tf.constant([5, 6]))[0])
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
