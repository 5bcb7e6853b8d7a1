"""Minibatched targets: the scale, the checks, unbiased gradients, SVI fits."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

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
    ],
)
def test_bad_num_examples_or_dataset_is_a_clear_error(
    dataset, num_examples, error, match
):
    with pytest.raises(error, match=match):
        minibatch_target(_prior, _log_likelihood, dataset(_data()), num_examples)


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
