"""Tests of the relaxed straight-through categorical and Bernoulli."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from modes import assert_raises, mode_parameter

import tfp_vi_estimators
from tfp_vi_estimators.distributions import (
    RelaxedBernoulliStraightThrough,
    RelaxedOneHotCategoricalStraightThrough,
)

tfd = tfp.distributions

LOGITS = np.array([[1.0, 0.0, -1.0, 0.5], [0.2, 0.2, -2.0, 1.5]])
BERNOULLI_LOGITS = np.array([-1.0, 0.3, 2.0])
MODES = pytest.mark.parametrize("mode", ["eager", "tf_function", "xla"])


def _run(fn, mode):
    return fn() if mode == "eager" else tf.function(fn, jit_compile=mode == "xla")()


def _categorical(dtype=np.float64, temperature=0.5):
    return RelaxedOneHotCategoricalStraightThrough(
        tf.constant(temperature, dtype), logits=tf.constant(LOGITS, dtype)
    ), tfd.RelaxedOneHotCategorical(
        tf.constant(temperature, dtype), logits=tf.constant(LOGITS, dtype)
    )


def _bernoulli(dtype=np.float64, temperature=0.5):
    return RelaxedBernoulliStraightThrough(
        tf.constant(temperature, dtype), logits=tf.constant(BERNOULLI_LOGITS, dtype)
    ), tfd.RelaxedBernoulli(
        tf.constant(temperature, dtype), logits=tf.constant(BERNOULLI_LOGITS, dtype)
    )


def _pmf(ours):
    """The law of the hard values, as TFP writes it."""
    if ours.event_shape.rank:
        return tfd.OneHotCategorical(logits=ours.logits, dtype=ours.dtype)
    return tfd.Bernoulli(logits=ours.logits, dtype=ours.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.1, 1.0, 5.0])
def test_samples_are_exactly_one_hot_and_match_relaxed_argmax(dtype, temperature):
    ours, relaxed = _categorical(dtype, temperature)
    sample = ours.sample([50, 3], seed=(1, 2)).numpy()
    soft = relaxed.sample([50, 3], seed=(1, 2)).numpy()
    assert sample.shape == (50, 3, 2, 4) and sample.dtype == dtype
    assert set(np.unique(sample)) <= {0.0, 1.0}
    np.testing.assert_array_equal(sample.sum(-1), 1.0)
    np.testing.assert_array_equal(sample.argmax(-1), soft.argmax(-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.1, 1.0, 5.0])
def test_bernoulli_samples_are_exactly_zero_one_and_match_relaxed(dtype, temperature):
    ours, relaxed = _bernoulli(dtype, temperature)
    sample = ours.sample([200], seed=(3, 4)).numpy()
    soft = relaxed.sample([200], seed=(3, 4)).numpy()
    assert sample.shape == (200, 3) and set(np.unique(sample)) <= {0.0, 1.0}
    np.testing.assert_array_equal(sample, (soft > 0.5).astype(dtype))


@pytest.mark.parametrize(
    "build", [_categorical, _bernoulli], ids=["categorical", "bernoulli"]
)
@pytest.mark.parametrize("parameter", ["logits", "probs"])
def test_gradient_is_that_of_the_relaxed_sample(build, parameter):
    ours, relaxed = build()
    value = tf.Variable(getattr(ours, f"{parameter}_parameter")())
    weights = tf.constant(np.arange(1.0, 1.0 + ours.logits.shape[-1]))
    grads = []
    for cls in (type(ours), type(relaxed)):
        with tf.GradientTape() as tape:
            z = cls(ours.temperature, **{parameter: value}).sample(64, seed=(5, 6))
            loss = tf.reduce_sum(z * weights)  # linear: ST and relaxed agree
        grads.append(tape.gradient(loss, value))
    assert np.all(np.isfinite(grads[0])) and np.any(grads[0] != 0)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@MODES
@pytest.mark.parametrize(
    "build", [_categorical, _bernoulli], ids=["categorical", "bernoulli"]
)
def test_sample_and_log_prob_is_relaxed_density_at_soft_value(build, mode):
    # The relaxed density comes with the sample (experimental_sample_and_log_prob)
    # or from its pre-image (the sampler's hook), under any instance's
    # parameters; `log_prob` of the sample is the pmf (no pairing by identity).
    def compute():
        ours, relaxed = build()
        sample, log_prob = ours.experimental_sample_and_log_prob(40, seed=(7, 8))
        soft = relaxed.sample(40, seed=(7, 8))  # the same draw, by the same seed
        stopped = ours.copy(logits=tf.stop_gradient(ours.logits))
        hooked, pre_image = ours.sample_with_pre_image(40, seed=(7, 8))
        return (
            sample,
            soft,
            log_prob,
            relaxed.log_prob(soft),
            stopped.log_prob_of_pre_image(pre_image),
            ours.log_prob(sample),
            ours.sample(40, seed=(7, 8)),
            hooked,
        )

    outputs = _run(compute, mode)
    sample, soft, log_prob, expected, stopped_log_prob, pmf_log_prob, *same = (
        np.asarray(output) for output in outputs
    )
    np.testing.assert_allclose(pmf_log_prob, _pmf(build()[0]).log_prob(sample))
    for other in same:
        np.testing.assert_array_equal(other, sample)
    # Ours is computed from the pre-image (log / logit space); TFP's from the
    # rounded soft value. Compare where TFP's is finite (it can overflow when a
    # soft coordinate rounds to 0 or 1).
    finite = np.isfinite(expected)
    assert finite.mean() > 0.9
    np.testing.assert_allclose(log_prob[finite], expected[finite], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(stopped_log_prob, log_prob, rtol=1e-12)
    assert np.all(np.isfinite(log_prob))
    assert np.all((sample == 0) | (sample == 1))
    np.testing.assert_array_equal(
        sample, (soft > 0.5) if soft.ndim == 2 else np.eye(4)[soft.argmax(-1)]
    )


@pytest.mark.parametrize(
    "build", [_categorical, _bernoulli], ids=["categorical", "bernoulli"]
)
def test_log_prob_of_other_values_is_the_pmf(build):
    ours, _ = build()
    pmf = _pmf(ours)
    sample = ours.sample(10, seed=(1, 1))
    copied = tf.identity(sample)
    with tf.GradientTape() as tape:
        tape.watch(copied)
        log_prob = ours.log_prob(copied)
    np.testing.assert_allclose(log_prob, pmf.log_prob(copied), rtol=1e-12)
    np.testing.assert_allclose(
        ours.log_prob(sample.numpy()), pmf.log_prob(sample), rtol=1e-12
    )
    # Linear in the value, so a straight-through gradient reaches it.
    assert np.any(tape.gradient(log_prob, copied) != 0)


def test_log_prob_gradient_flows_through_the_soft_value():
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        q = RelaxedOneHotCategoricalStraightThrough(0.5, logits=logits)
        _, pre_image = q.sample_with_pre_image(8, seed=(2, 3))
        stopped = q.copy(logits=tf.stop_gradient(tf.convert_to_tensor(logits)))
        value = tf.reduce_sum(stopped.log_prob_of_pre_image(pre_image))
    grad = tape.gradient(value, logits)
    # Parameters are stopped, so this gradient comes through the sample path.
    assert grad is not None and np.any(grad != 0)


def test_hard_samples_follow_the_pmf(stats):
    # Hard values are exactly OneHotCategorical(logits) draws at any temperature.
    num_draws = 20_000
    ours = RelaxedOneHotCategoricalStraightThrough(2.0, logits=LOGITS)
    frequencies = ours.sample(num_draws, seed=(9, 9)).numpy()
    probs = tf.nn.softmax(LOGITS).numpy()
    z = (frequencies.mean(0) - probs) / np.sqrt(probs * (1 - probs) / num_draws)
    # Bonferroni over the 8 cells, familywise alpha 1e-3.
    assert np.max(np.abs(z)) < stats.bonferroni_threshold(z.size, 1e-3), z
    np.testing.assert_allclose(ours.mean(), probs, rtol=1e-12)


def test_fits_uniform_target_with_reparameterized_elbo():
    target = tfd.OneHotCategorical(probs=[0.25] * 4, dtype=tf.float32)
    logits = tf.Variable([2.0, 0.0, -1.0, 0.5])
    num_steps = 500
    schedule = tf_keras.optimizers.schedules.PolynomialDecay(0.05, num_steps, 0.005)
    optimizer = tf_keras.optimizers.Adam(schedule)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tfp_vi_estimators.monte_carlo_variational_loss(
                target.log_prob,
                RelaxedOneHotCategoricalStraightThrough(0.5, logits=logits),
                sample_size=64,
                gradient_estimator=tfp_vi_estimators.GradientEstimators.REPARAMETERIZATION,
                seed=seed,
            )
        optimizer.apply_gradients([(tape.gradient(loss, logits), logits)])

    for i in range(num_steps):
        step(tf.constant([i, 42]))
    probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probs, 0.25, atol=0.02)


def test_copy_parameters_batch_shape_and_slicing():
    q = RelaxedOneHotCategoricalStraightThrough(
        tf.constant([0.5, 1.0], tf.float64), probs=tf.nn.softmax(LOGITS)
    )
    assert q.batch_shape == [2] and q.event_shape == [4]
    assert type(q)(**q.parameters).batch_shape == [2]
    assert q[1].batch_shape == [] and q[1].sample(seed=(1, 1)).shape == [4]
    np.testing.assert_allclose(
        q.logits_parameter(), tf.math.log(tf.nn.softmax(LOGITS)), rtol=1e-6
    )
    b = RelaxedBernoulliStraightThrough(0.3, probs=[0.2, 0.9])
    assert b.batch_shape == [2] and b.event_shape == []
    assert b.reparameterization_type == tfd.FULLY_REPARAMETERIZED

    @tf.function
    def draw(dist):
        return dist.sample(seed=(3, 3))

    assert draw(q).shape == [2, 4] and draw(b).shape == [2]


@pytest.mark.parametrize(
    "cls", [RelaxedOneHotCategoricalStraightThrough, RelaxedBernoulliStraightThrough]
)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(temperature=None, logits=[0.0, 1.0]),
            TypeError,
            "`temperature` is required",
        ),
        (dict(temperature=0.5), ValueError, "exactly one of `logits` or `probs`"),
        (
            dict(temperature=0.5, logits=[0.0, 1.0], probs=[0.5, 0.5]),
            ValueError,
            "exactly one of `logits` or `probs`",
        ),
        (
            dict(temperature=-1.0, logits=[0.0, 1.0]),
            ValueError,
            "`temperature` must be positive",
        ),
        (
            dict(temperature=0.5, probs=[0.5, 1.5]),
            ValueError,
            r"`probs` must lie in \[0, 1\]",
        ),
        (
            dict(temperature=0.5, logits=np.array([0, 1])),
            TypeError,
            "`logits`.*floating",
        ),
        (
            dict(temperature=np.float32(0.5), logits=np.array([0.0, 1.0])),
            TypeError,
            "`temperature` is float32",
        ),
        (dict(temperature="hot", logits=[0.0, 1.0]), TypeError, "`temperature`"),
    ],
)
@mode_parameter
def test_constructor_rejects_bad_arguments(cls, kwargs, error, match, mode):
    assert_raises(mode, lambda: cls(**kwargs), error, match)


def test_categorical_rejects_scalar_logits():
    with pytest.raises(ValueError, match="`logits` must have rank >= 1"):
        RelaxedOneHotCategoricalStraightThrough(0.5, logits=1.0)


def test_validate_args_checks_variable_temperature_at_run_time():
    temperature = tf.Variable(0.5)
    q = RelaxedBernoulliStraightThrough(temperature, logits=[0.0], validate_args=True)
    temperature.assign(-1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature"):
        q.sample(seed=(1, 1))


def _straight_through_problem(cls, logits):
    """A smooth target in the hard sample: log p(z) = -theta |z - c|^2."""
    logits = tf.Variable(logits)
    theta = tf.Variable(tf.constant(0.7, logits.dtype))
    q = cls(tf.constant(0.5, logits.dtype), logits=logits)
    c = tf.constant(np.linspace(0.1, 0.9, logits.shape[-1]), logits.dtype)
    event_axes = [-1] if cls is RelaxedOneHotCategoricalStraightThrough else []

    def target(z, theta=theta):
        return -theta * tf.reduce_sum((z - c) ** 2, axis=event_axes)

    return q, target, [logits, theta]


@MODES
@pytest.mark.parametrize(
    "cls, logits",
    [
        (RelaxedOneHotCategoricalStraightThrough, LOGITS),
        (RelaxedBernoulliStraightThrough, BERNOULLI_LOGITS),
    ],
    ids=["categorical", "bernoulli"],
)
def test_doubly_reparameterized_scores_the_relaxed_density(cls, logits, mode):
    # The estimator's gradient scaling must reach the relaxed pre-image the
    # sampler keeps (the pre-image hook): the one-target-evaluation gradient
    # then equals the two-evaluation DReG formula written with the relaxed
    # density (docs/estimators.md, DOUBLY_REPARAMETERIZED), on the same draws.
    importance_sample_size, seed = 3, (4, 9)
    q, target, variables = _straight_through_problem(cls, logits)

    def ours():
        return tfp_vi_estimators.monte_carlo_variational_loss(
            target,
            q,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=tfp_vi_estimators.kl_forward,
            gradient_estimator=tfp_vi_estimators.GradientEstimators.DOUBLY_REPARAMETERIZED,
            seed=seed,
        )

    def reference():
        sample_seed, _ = tfp.random.split_seed(seed, 2)
        z, pre_image = q.sample_with_pre_image(
            [importance_sample_size], seed=sample_seed
        )
        stopped_q = q.copy(logits=tf.stop_gradient(q.logits))
        log_w = target(
            z, tf.stop_gradient(variables[1])
        ) - stopped_q.log_prob_of_pre_image(pre_image)
        log_mean = tf.reduce_logsumexp(log_w, axis=0) - np.log(importance_sample_size)
        f1, f2 = tfp_vi_estimators.csiszar.discrepancy_derivatives(
            tfp_vi_estimators.kl_forward, log_mean
        )
        wt = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
        phi_part = tf.reduce_sum(tf.stop_gradient((f1 - f2) * wt**2) * log_w, axis=0)
        theta_part = tf.reduce_sum(
            tf.stop_gradient(f1 * wt) * target(tf.stop_gradient(z)), axis=0
        )
        return phi_part + theta_part

    def grads():
        result = []
        for loss_fn in (ours, reference):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(loss_fn())
            result.append(tape.gradient(loss, variables))
        return result

    got, expected = _run(grads, mode)
    for g, e in zip(got, expected, strict=True):
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
