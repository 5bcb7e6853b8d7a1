"""Minibatched targets: the scale, the checks, unbiased gradients, SVI fits."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve
from tfp_vi_estimators.minibatch import minibatch_target

tfd = tfp.distributions
tfb = tfp.bijectors

# Conjugate model: x_i ~ Normal(mu, SIGMA), mu ~ Normal(0, PRIOR_SCALE).
NUM_EXAMPLES, BATCH, SIGMA, PRIOR_SCALE = 1000, 50, 2.0, 10.0


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(1.5, SIGMA, size=NUM_EXAMPLES).astype(np.float32)


def _prior(mu):
    return tfd.Normal(0.0, PRIOR_SCALE).log_prob(mu)


def _log_likelihood(batch, mu):
    # mu: sample_shape; batch: [b] -> sample_shape + [b].
    return tfd.Normal(mu[..., tf.newaxis], SIGMA).log_prob(batch)


def _dataset(x, shuffle_seed=1):
    return (
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(len(x), seed=shuffle_seed)
        .batch(BATCH, drop_remainder=True)
    )


def _posterior(x):
    precision = 1 / PRIOR_SCALE**2 + len(x) / SIGMA**2
    return np.sum(x) / SIGMA**2 / precision, precision**-0.5


def _surrogate():
    return tfd.Normal(
        tf.Variable(0.0, name="loc"),
        tfp.util.TransformedVariable(1.0, tfb.Exp(), name="scale"),
    )


@pytest.mark.parametrize(
    "dataset, num_examples, error, match",
    [
        (lambda x: _dataset(x), None, ValueError, "num_examples` is required"),
        (lambda x: _dataset(x), 1000.0, TypeError, "num_examples"),
        (lambda x: _dataset(x), 20, ValueError, "smaller than the dataset's batch"),
        (lambda x: _dataset(x), 2000, ValueError, "does not match `dataset`"),
        (
            lambda x: tf.data.Dataset.from_tensor_slices(x[:990]).batch(BATCH),
            990,
            ValueError,
            "partial batch",
        ),
        (lambda x: x, 1000, TypeError, "tf.data.Dataset"),
        (lambda x: _dataset(x), 0, ValueError, "`num_examples` must be positive"),
        (lambda x: _dataset(x), -1000, ValueError, "`num_examples` must be posit"),
        (lambda x: _dataset(x), True, TypeError, "`num_examples` must be a posi"),
        (lambda x: _dataset(x), "1000", TypeError, "`num_examples` must be a pos"),
        (lambda x: _dataset(x), tf.constant(1000), TypeError, "`num_examples`"),
        (
            lambda x: tf.data.Dataset.from_tensors(x[:0]).repeat(),
            1000,
            ValueError,
            "batches must hold at least one example",
        ),
        (
            lambda x: tf.data.Dataset.from_tensor_slices(x).batch(50).take(0),
            1000,
            ValueError,
            "static batch size",
        ),
        (
            lambda x: (
                tf.data.Dataset.from_tensor_slices((x, x[:, None]))
                .batch(50, drop_remainder=True)
                .map(lambda a, b: (a, b[:10]))
            ),
            1000,
            ValueError,
            "same batch size",
        ),
    ],
)
def test_bad_num_examples_or_dataset_is_a_clear_error(
    dataset, num_examples, error, match
):
    with pytest.raises(error, match=match):
        minibatch_target(_prior, _log_likelihood, dataset(_data()), num_examples)


@pytest.mark.parametrize(
    "prior, likelihood, match",
    [(None, _log_likelihood, "`prior_log_prob_fn`"), (_prior, 1.0, "`log_likelihood")],
)
def test_non_callable_functions_are_clear_errors(prior, likelihood, match):
    with pytest.raises(TypeError, match=match):
        minibatch_target(prior, likelihood, _dataset(_data()), NUM_EXAMPLES)


def test_numpy_num_examples_is_accepted():
    target = minibatch_target(
        _prior, _log_likelihood, _dataset(_data()), np.int64(NUM_EXAMPLES)
    )
    assert target.num_examples == NUM_EXAMPLES and type(target.num_examples) is int


def test_a_dropped_remainder_and_a_repeated_dataset_are_accepted():
    x = _data()
    one_epoch = tf.data.Dataset.from_tensor_slices(x[:1020]).batch(
        BATCH, drop_remainder=True
    )
    assert minibatch_target(_prior, _log_likelihood, one_epoch, 1020).batch_size == 50
    forever = (
        tf.data.Dataset.from_tensor_slices(x).repeat().batch(BATCH, drop_remainder=True)
    )
    target = minibatch_target(_prior, _log_likelihood, forever, NUM_EXAMPLES)
    assert float(target.scale()) == NUM_EXAMPLES / BATCH


def test_mean_minibatch_gradient_is_the_full_data_gradient():
    # Same surrogate draws (fixed seed) for every batch: the only randomness
    # is which examples are in the batch, drawn uniformly without replacement.
    x = _data()
    target = minibatch_target(
        _prior, _log_likelihood, _dataset(x), num_examples=NUM_EXAMPLES
    )
    q = _surrogate()

    def gradient(target_log_prob_fn):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target_log_prob_fn, q, sample_size=4, seed=(3, 4)
            )
        return tf.stack(tape.gradient(loss, q.trainable_variables))

    full = gradient(lambda mu: _prior(mu) + tf.reduce_sum(_log_likelihood(x, mu), -1))
    batch_gradient = tf.function(lambda b: gradient(target.target_log_prob_fn(b)))
    rng = np.random.default_rng(5)
    draws = np.stack(
        [
            batch_gradient(rng.choice(x, BATCH, replace=False)).numpy()
            for _ in range(100)
        ]
    )
    standard_error = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    # 4 standard errors: a two-sided normal tail of 6e-5 per component.
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - full), 4 * standard_error)
    # The check is sharp: the tolerance is under a quarter of the gradient,
    # while a scale of 1 instead of N / b = 20 would remove 95% of the
    # likelihood's part of it.
    np.testing.assert_array_less(4 * standard_error, 0.25 * np.abs(full))


def test_minibatch_fit_reaches_the_closed_form_posterior():
    x = _data()
    mean, sd = _posterior(x)
    q = _surrogate()
    losses, means, sds = tve.fit_surrogate_posterior(
        minibatch_target(_prior, _log_likelihood, _dataset(x), NUM_EXAMPLES),
        q,
        keras.optimizers.Adam(0.1),
        num_steps=1500,
        sample_size=8,
        seed=(1, 2),
        progress=False,
        trace_fn=lambda tq: (tq.loss, q.mean(), q.stddev()),
    )
    assert losses.shape == [1500] and np.all(np.isfinite(losses))
    # With a constant learning rate the iterate jitters around the optimum
    # with the minibatch noise; the average of the last 500 iterates (Polyak)
    # removes most of it. A quarter of a posterior sd in the mean, 10% in the
    # sd: far below what a wrong scale gives (1 instead of N / b = 20: an sd
    # 4.5 times too large).
    np.testing.assert_allclose(np.mean(means[-500:]), mean, atol=0.25 * sd)
    np.testing.assert_allclose(np.mean(sds[-500:]), sd, rtol=0.1)


def test_checkpointed_minibatch_fit_resumes_the_data_stream(tmp_path):
    x = _data()

    def fit(num_steps, checkpoint_dir=None):
        q = _surrogate()
        trace = tve.fit_surrogate_posterior(
            minibatch_target(_prior, _log_likelihood, _dataset(x), NUM_EXAMPLES),
            q,
            keras.optimizers.Adam(0.05),
            num_steps=num_steps,
            sample_size=2,
            seed=(1, 2),
            progress=False,
            jit_compile=True,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=15 if checkpoint_dir else None,
        )
        return np.asarray(trace), float(q.mean())

    fit(30, str(tmp_path))  # 30 steps: the iterator is mid-epoch (20 a epoch).
    resumed_trace, resumed_mean = fit(45, str(tmp_path))
    trace, final_mean = fit(45)
    np.testing.assert_array_equal(resumed_trace, trace)
    assert resumed_mean == final_mean


# Subsampled targets: in-memory data, the batch drawn from the call's seed.


def _with_value(value, dtype=np.float32):
    x = _data().astype(dtype)
    x[123] = value
    return x


@mode_parameter
@pytest.mark.parametrize(
    "arguments, error, match",
    [
        (dict(prior_log_prob_fn=None), TypeError, "`prior_log_prob_fn` must be"),
        (dict(log_likelihood_fn=1.0), TypeError, "`log_likelihood_fn` must be"),
        (dict(batch_size=0), ValueError, "between 1 and the 1000 examples"),
        (dict(batch_size=-5), ValueError, "between 1 and the 1000 examples"),
        (dict(batch_size=1001), ValueError, "between 1 and the 1000 examples"),
        (dict(batch_size=50.0), TypeError, "`batch_size` must be"),
        (dict(batch_size=True), TypeError, "`batch_size` must be"),
        (dict(batch_size=tf.constant(50)), TypeError, "`batch_size` must be"),
        (dict(data=(np.zeros(1000), np.zeros(999))), ValueError, "same number"),
        (dict(data=np.float32(1.0)), ValueError, "static leading dimension"),
        (dict(data=[1.0, 2.0]), TypeError, "`data` must be a tensor"),
        (dict(data=()), ValueError, "holds no tensors"),
        (dict(data=np.zeros([0, 3])), ValueError, "`data` holds no examples"),
        (dict(data=_with_value(np.nan)), ValueError, "`data` must be finite.*1 NaN"),
        (dict(data=_with_value(-np.inf, np.float64)), ValueError, "must be finite"),
        (
            dict(data={"x": _data(), "y": _with_value(np.inf)}),
            ValueError,
            "`data` must be finite",
        ),
        (
            dict(data=np.array([{}, None] * 500, dtype=object)),
            TypeError,
            "`data` must be tensors or arrays of numbers",
        ),
    ],
)
def test_bad_subsampled_target_arguments_are_clear_errors(
    mode, arguments, error, match
):
    given = dict(
        prior_log_prob_fn=_prior,
        log_likelihood_fn=_log_likelihood,
        data=_data(),
        batch_size=BATCH,
    )
    given.update(arguments)
    before = tf.nest.map_structure(np.array, given["data"])
    assert_raises(mode, lambda: tve.subsampled_target(**given), error, match)
    tf.nest.map_structure(np.testing.assert_array_equal, given["data"], before)


def test_subsampled_target_takes_numpy_sizes_and_leaves_the_data_alone():
    data = {"x": _data(), "label": np.arange(NUM_EXAMPLES)}  # ints: not checked
    before = {k: v.copy() for k, v in data.items()}
    target = tve.subsampled_target(
        _prior, lambda b, mu: _log_likelihood(b["x"], mu), data, np.int64(BATCH)
    )
    assert target.batch_size == BATCH and type(target.batch_size) is int
    assert np.isfinite(target(tf.constant([0.5]), seed=(1, 2))).all()
    assert set(data) == {"x", "label"}
    for key, value in before.items():
        np.testing.assert_array_equal(data[key], value)


def test_subsampled_batch_is_a_function_of_the_seed():
    target = tve.subsampled_target(_prior, _log_likelihood, _data(), BATCH)
    first = target.batch_indices((1, 2)).numpy()
    np.testing.assert_array_equal(target.batch_indices((1, 2)), first)
    assert not np.array_equal(target.batch_indices((1, 3)), first)
    assert first.shape == (BATCH,) and 0 <= first.min() and first.max() < 1000
    mu = tf.constant([0.5, 1.5])
    expected = _prior(mu) + 20.0 * tf.reduce_sum(
        _log_likelihood(tf.gather(_data(), first), mu), -1
    )
    np.testing.assert_allclose(target(mu, seed=(1, 2)), expected, rtol=1e-6)
    full = _prior(mu) + tf.reduce_sum(_log_likelihood(_data(), mu), -1)
    np.testing.assert_allclose(target.full_log_prob(mu), full, rtol=1e-6)


def test_subsampled_loss_gradient_is_unbiased():
    # 400 loss seeds (new surrogate draws and a new batch each): the mean
    # gradient is within 4 standard errors, from the same draws, of the
    # gradient of KL(q || posterior), the full-data loss's up to a constant.
    x = _data()
    target = tve.subsampled_target(_prior, _log_likelihood, x, BATCH)
    q = _surrogate()

    @tf.function(autograph=False)
    def gradient(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(target, q, sample_size=4, seed=seed)
        return tf.stack(tape.gradient(loss, q.trainable_variables))

    draws = np.stack([gradient(tf.constant([7, i])).numpy() for i in range(400)])
    with tf.GradientTape() as tape:
        kl = tfd.kl_divergence(q, tfd.Normal(*_posterior(x)))
    exact = np.stack(tape.gradient(kl, q.trainable_variables))
    standard_error = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - exact), 4 * standard_error)
    # Sharp: a scale of 1 instead of N / b = 20 would remove 95% of the
    # likelihood's part of the gradient, far beyond this tolerance.
    np.testing.assert_array_less(4 * standard_error, 0.25 * np.abs(exact))


def test_subsampled_fit_under_xla_reaches_the_closed_form_posterior():
    x = _data()
    q = _surrogate()
    _, means, sds = tve.fit_surrogate_posterior(
        tve.subsampled_target(_prior, _log_likelihood, x, BATCH),
        q,
        keras.optimizers.Adam(0.1),
        num_steps=1500,
        sample_size=8,
        seed=(1, 2),
        progress=False,
        jit_compile=True,
        trace_fn=lambda tq: (tq.loss, q.mean(), q.stddev()),
    )
    _assert_polyak_average_reaches(np.asarray(means), np.asarray(sds), x)


def _assert_polyak_average_reaches(means, sds, x):
    """The average of the iterates after 500 steps is the closed form.

    Batches drawn with replacement do not cancel over an epoch as a shuffled
    epoch's do, so the average keeps the batches' noise: the tolerance is 5
    standard errors of the average, estimated from 10 blocks of iterates
    (block means are nearly independent), and must stay far below the error
    of a fit stuck on one batch (several posterior sds) or with a wrong
    scale (an sd sqrt(20) times too large).
    """
    mean, sd = _posterior(x)
    for iterates, expected in ((means, mean), (sds, sd)):
        blocks = iterates[500:].reshape(10, -1).mean(axis=1)
        standard_error = blocks.std(ddof=1) / np.sqrt(len(blocks))
        assert 5 * standard_error < 1.5 * sd
        np.testing.assert_allclose(blocks.mean(), expected, atol=5 * standard_error)


def test_subsampled_target_fits_with_the_keras_model():
    # An ordinary target to the Keras model, which hands it a new seed each
    # step: 1,500 steps of Adam(0.1), as the fit above.
    from tfp_vi_estimators.keras_models import SurrogatePosteriorModel

    x = _data()
    q = _surrogate()
    model = SurrogatePosteriorModel(
        tve.subsampled_target(_prior, _log_likelihood, x, BATCH),
        q,
        sample_size=8,
        seed=3,
    )
    model.compile(keras.optimizers.Adam(0.1), jit_compile=True)

    class Iterates(keras.callbacks.Callback):
        means, sds = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.means.append(float(q.mean()))
            self.sds.append(float(q.stddev()))

    model.fit(epochs=1, steps_per_epoch=1500, verbose=0, callbacks=[Iterates()])
    _assert_polyak_average_reaches(np.array(Iterates.means), np.array(Iterates.sds), x)


@pytest.mark.parametrize(
    "estimator, importance_sample_size",
    [
        (tve.GradientEstimators.SCORE_FUNCTION, 1),
        (tve.GradientEstimators.DOUBLY_REPARAMETERIZED, 4),
        (tve.GradientEstimators.VIMCO, 4),
    ],
)
def test_every_estimator_fits_from_minibatches(estimator, importance_sample_size):
    # The minibatch target is an ordinary target to the loss: each estimator
    # takes finite steps on the first batches and moves the mean toward the
    # posterior mean, 1.40, from 0 (Adam(0.05) moves it about 0.05 a step at
    # most, so only the direction is asked of 20 noisy steps).
    q = _surrogate()
    losses = tve.fit_surrogate_posterior(
        minibatch_target(_prior, _log_likelihood, _dataset(_data()), NUM_EXAMPLES),
        q,
        keras.optimizers.Adam(0.05),
        num_steps=20,
        sample_size=4,
        importance_sample_size=importance_sample_size,
        gradient_estimator=estimator,
        seed=(1, 2),
        progress=False,
    )
    assert np.all(np.isfinite(losses))
    assert 0.0 < float(q.mean()) < 1.5


def test_minibatch_fit_shows_progress(capsys):
    tve.fit_surrogate_posterior(
        minibatch_target(_prior, _log_likelihood, _dataset(_data()), NUM_EXAMPLES),
        _surrogate(),
        keras.optimizers.Adam(0.05),
        num_steps=30,
        seed=(1, 2),
        progress=True,
    )
    err = capsys.readouterr().err
    assert "step 30/30" in err and "steps/s" in err


def test_a_non_finite_batch_stops_the_fit_at_its_step():
    # The 12th example is NaN: the first batch that holds it makes the loss
    # non-finite; its update is not applied and the error names its step.
    x = _data()
    x[11] = np.nan
    q = _surrogate()
    with pytest.raises(tve.fitting.NonFiniteLossError) as caught:
        tve.fit_surrogate_posterior(
            minibatch_target(_prior, _log_likelihood, _dataset(x), NUM_EXAMPLES),
            q,
            keras.optimizers.Adam(0.05),
            num_steps=100,
            seed=(1, 2),
            progress=False,
        )
    batches = [b.numpy() for b in _dataset(x)]
    step = next(i for i, b in enumerate(batches) if np.isnan(b).any())
    assert caught.value.step == step
    assert f"step {step}" in str(caught.value)
    assert np.isfinite(float(q.mean()))


def test_checkpointed_subsampled_fit_resumes_exactly(tmp_path):
    # No iterator to save: the batches are a function of the seed state,
    # which the checkpoint holds.
    def fit(num_steps, checkpoint_dir=None):
        return np.asarray(
            tve.fit_surrogate_posterior(
                tve.subsampled_target(_prior, _log_likelihood, _data(), BATCH),
                _surrogate(),
                keras.optimizers.Adam(0.05),
                num_steps=num_steps,
                sample_size=2,
                seed=(1, 2),
                progress=False,
                jit_compile=True,
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=10 if checkpoint_dir else None,
            )
        )

    fit(30, str(tmp_path))
    np.testing.assert_array_equal(fit(45, str(tmp_path)), fit(45))


def test_subsampled_target_repr_leaves_out_the_data():
    text = repr(tve.subsampled_target(_prior, _log_likelihood, _data(), BATCH))
    assert "num_examples=1000" in text and "batch_size=50" in text
    assert "data=" not in text
