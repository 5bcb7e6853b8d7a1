"""Bayesian logistic regression from minibatches (stochastic VI).

Two data sets: the breast-cancer data that ships with scikit-learn (569 rows,
30 features; no download) and a synthetic one of `--rows` rows (default
1,000,000). The user writes the prior and the per-example log-likelihood;
`minibatch_target` applies `num_examples / batch_size`, so the minibatch loss
is an unbiased estimate of the full-data loss. On the real data the minibatch
fit is compared with a full-batch fit of the same model. The synthetic data is
fitted twice: from a shuffled `tf.data` pipeline (`minibatch_target`) and by
`subsampled_target`, which draws each batch from the step's seed and gathers
it inside the compiled step (data in memory; faster per step).

    python examples/minibatch_logistic_regression.py [--rows 1000000]
        [--steps 2000] [--batch 256]
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_breast_cancer

import tfp_vi_estimators as tve
from tfp_vi_estimators.minibatch import minibatch_target
from tfp_vi_estimators.problems import logistic_regression_data

tfd = tfp.distributions


def prior_log_prob(weights):
    return tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(weights), -1)


def log_likelihood(batch, weights):
    """One log-likelihood per example: `[S, b]` for weights `[S, D]`."""
    x, y = batch
    logits = tf.linalg.matmul(weights, x, transpose_b=True)
    return tfd.Bernoulli(logits=logits).log_prob(y)


def surrogate(dim):
    return tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(0.1 * tf.ones(dim), tfp.bijectors.Exp()),
    )


def fit(target, dim, steps, seed=(1, 2)):
    q = surrogate(dim)
    start = time.perf_counter()
    tve.fit_surrogate_posterior(
        target,
        q,
        keras.optimizers.Adam(0.02),
        num_steps=steps,
        sample_size=8,
        jit_compile=True,
        seed=seed,
    )
    return q, time.perf_counter() - start


def breast_cancer(steps, batch_size):
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    x = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)  # bias
    y = y.astype(np.float32)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=0)
        .batch(batch_size, drop_remainder=True)
    )
    minibatched = minibatch_target(prior_log_prob, log_likelihood, dataset, len(x))

    def full_data(weights):
        return prior_log_prob(weights) + tf.reduce_sum(
            log_likelihood((x, y), weights), -1
        )

    q_mini, seconds = fit(minibatched, x.shape[1], steps)
    q_full, _ = fit(full_data, x.shape[1], steps)
    print(f"breast cancer: {len(x)} rows, batches of {batch_size}, {seconds:.1f} s")
    print("  max |mean(minibatch) - mean(full batch)| / sd(full batch):")
    gap = np.abs(q_mini.mean() - q_full.mean()) / q_full.stddev()
    print(f"    {float(np.max(gap)):.2f}")
    print(
        "  sd ratio minibatch / full batch: "
        f"{float(np.min(q_mini.stddev() / q_full.stddev())):.2f} .. "
        f"{float(np.max(q_mini.stddev() / q_full.stddev())):.2f}"
    )


def synthetic(rows, steps, batch_size, dim=20):
    x, y, w = logistic_regression_data(rows, dim)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(100_000, seed=0)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    routes = {
        "tf.data batches (minibatch_target)": minibatch_target(
            prior_log_prob, log_likelihood, dataset, rows
        ),
        "in-memory gather (subsampled_target)": tve.subsampled_target(
            prior_log_prob, log_likelihood, (x, y), batch_size
        ),
    }
    print(f"synthetic: {rows} rows, {steps} steps of {batch_size}, compile included")
    for name, target in routes.items():
        q, seconds = fit(target, dim, steps)
        error = float(np.max(np.abs(q.mean() - w)))
        print(
            f"  {name}: {seconds:.1f} s ({steps / seconds:.0f} steps/s); "
            f"max |E_q[w] - w_true| = {error:.3f}, posterior sd ~ "
            f"{float(np.mean(q.stddev())):.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    breast_cancer(args.steps, min(args.batch, 64))
    synthetic(args.rows, args.steps, args.batch)


if __name__ == "__main__":
    main()
