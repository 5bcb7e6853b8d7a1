"""Minibatch (stochastic) variational inference with Keras, on real data.

Bayesian logistic regression on the Wisconsin breast cancer data that ships
inside scikit-learn (569 rows, 30 standardized features plus an intercept;
`sklearn.datasets.load_breast_cancer`, no download), with a mean-field
Normal surrogate and a N(0, 1) prior on every weight:

- `full`: `SurrogatePosteriorModel` on all rows at every step;
- `minibatch`: `MinibatchSurrogatePosteriorModel` on shuffled minibatches of
  `--batch-size` rows; the library scales each minibatch log-likelihood by
  `num_examples / batch_size`.

Both run the same number of steps with Adam, the last half at a tenth of the
learning rate, and average the iterates of the last quarter (Polyak
averaging). Printed: the largest difference of the two posterior means and
standard deviations, in units of the full-data posterior standard deviation.

    python examples/keras_minibatch.py [--epochs 60] [--batch-size 32]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_vi_estimators import keras_models  # noqa: E402

tfd = tfp.distributions


def load_data():
    """Standardized features with an intercept column, and 0/1 labels."""
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    return features.astype(np.float32), labels.astype(np.float32)


def log_likelihood_fn(batch, weights):  # [S, D] -> per-example [S, batch_size]
    features, labels = batch
    logits = tf.matmul(weights, features, transpose_b=True)
    return tfd.Bernoulli(logits=logits).log_prob(labels)


def mean_field(dim):
    loc = tf.Variable(tf.zeros(dim), name="loc")
    scale = tfp.util.TransformedVariable(
        tf.fill([dim], 0.1), tfp.bijectors.Softplus(), name="scale"
    )
    return tfd.Independent(tfd.Normal(loc, scale), 1), loc, scale


class PolyakAverage(keras.callbacks.Callback):
    """Averages `(loc, scale)` over the executions after `start_step`."""

    def __init__(self, loc, scale, start_step):
        super().__init__()
        self.loc, self.scale, self.start_step = loc, scale, start_step
        self.steps, self.trace = 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps > self.start_step:
            self.trace.append((self.loc.numpy(), self.scale.numpy()))

    def average(self):
        return [np.mean(t, axis=0) for t in zip(*self.trace, strict=True)]


def fit(model, loc, scale, dataset, epochs, steps_per_epoch, learning_rate):
    num_steps = epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [num_steps // 2], [learning_rate, learning_rate / 10]
    )
    model.compile(keras.optimizers.Adam(schedule), jit_compile=True)
    average = PolyakAverage(loc, scale, 3 * num_steps // 4)
    model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[average],
        verbose=0,
        shuffle=False,
    )
    return average.average()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    features, labels = load_data()
    num_examples, dim = features.shape
    prior = tfd.Independent(tfd.Normal(tf.zeros(dim), 1.0), 1)
    steps_per_epoch = num_examples // args.batch_size

    def full_target(weights):
        return prior.log_prob(weights) + tf.reduce_sum(
            log_likelihood_fn((features, labels), weights), -1
        )

    q, loc, scale = mean_field(dim)
    full = keras_models.SurrogatePosteriorModel(full_target, q, sample_size=4, seed=1)
    full_mean, full_sd = fit(
        full, loc, scale, None, args.epochs, steps_per_epoch, args.learning_rate
    )

    q, loc, scale = mean_field(dim)
    minibatched = keras_models.MinibatchSurrogatePosteriorModel(
        prior.log_prob,
        log_likelihood_fn,
        q,
        num_examples=num_examples,
        sample_size=4,
        seed=1,
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(num_examples, seed=0, reshuffle_each_iteration=True)
        .batch(args.batch_size, drop_remainder=True)
    )
    mb_mean, mb_sd = fit(
        minibatched,
        loc,
        scale,
        dataset,
        args.epochs,
        steps_per_epoch,
        args.learning_rate,
    )
    results = {
        "max_mean_difference_in_sd": float(
            np.max(np.abs(mb_mean - full_mean) / full_sd)
        ),
        "max_sd_ratio_difference": float(np.max(np.abs(mb_sd / full_sd - 1.0))),
    }
    print(f"{num_examples} rows, {dim} weights, batches of {args.batch_size}")
    print(f"full-data posterior sd: {np.round(full_sd, 3)}")
    print(
        "minibatch vs full: max |mean difference| / sd = "
        f"{results['max_mean_difference_in_sd']:.3f}, max |sd ratio - 1| = "
        f"{results['max_sd_ratio_difference']:.3f}"
    )
    return results


if __name__ == "__main__":
    main()
