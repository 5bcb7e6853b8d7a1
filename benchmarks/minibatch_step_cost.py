"""Per-step cost of a minibatched fit does not grow with N; a full-data one does.

Bayesian logistic regression (D = 20, mean-field Normal, Adam, sample_size 8,
XLA). For each number of rows N, alternating rounds run:

- ours, minibatched: `minibatch_target` over a shuffled `tf.data` epoch,
  batches of `--batch`;
- ours, subsampled: `subsampled_target` over the same arrays in memory (each
  step gathers `--batch` rows drawn from its seed, inside the XLA loop);
- `tfp.vi.fit_surrogate_posterior` on the full data (tfp.vi has no minibatch
  path; a full-data step is what it costs a user).

Per-step costs are measured after compilation: for ours, the steady steps/s of
the progress line (host round trips included); for `tfp.vi`, a second call of
its compiled fit (`tf.function(jit_compile=True)`). Medians over rounds, as a
markdown table.

    python benchmarks/minibatch_step_cost.py [--rows 10000 100000 1000000]
        [--rounds 3] [--steps 500] [--batch 256]
"""

import argparse
import contextlib
import io
import re
import statistics
import time

import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.minibatch import minibatch_target
from tfp_vi_estimators.problems import logistic_regression_data

tfd = tfp.distributions
DIM = 20


def data(rows, seed=0):
    x, y, _ = logistic_regression_data(rows, DIM, seed)
    return x, y


def prior_log_prob(weights):
    return tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(weights), -1)


def log_likelihood(batch, weights):
    x, y = batch
    return tfd.Bernoulli(
        logits=tf.linalg.matmul(weights, x, transpose_b=True)
    ).log_prob(y)


def surrogate():
    return tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(DIM)),
        tfp.util.TransformedVariable(tf.ones(DIM), tfp.bijectors.Softplus()),
    )


def ours(x, y, steps, batch):
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(min(len(x), 100_000), seed=0)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    target = minibatch_target(prior_log_prob, log_likelihood, dataset, len(x))
    return _seconds_per_step(target, steps)


def ours_subsampled(x, y, steps, batch):
    target = tve.subsampled_target(prior_log_prob, log_likelihood, (x, y), batch)
    return _seconds_per_step(target, steps)


def _seconds_per_step(target, steps):
    """Steady seconds per step of our XLA fit, read off its progress line."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        tve.fit_surrogate_posterior(
            target,
            surrogate(),
            keras.optimizers.Adam(0.05),
            num_steps=steps,
            sample_size=8,
            jit_compile=True,
            seed=(1, 2),
            progress=True,
        )
    return 1 / float(re.findall(r"([0-9.]+) steps/s", err.getvalue())[-1])


def theirs(x, y, steps):
    def target(weights):
        return prior_log_prob(weights) + tf.reduce_sum(
            log_likelihood((x, y), weights), -1
        )

    args = (target, surrogate(), keras.optimizers.Adam(0.05))
    fit = tf.function(
        lambda: tfp.vi.fit_surrogate_posterior(
            *args, num_steps=steps, sample_size=8, seed=(1, 2)
        ),
        autograph=False,
        jit_compile=True,
    )
    float(fit()[-1])
    start = time.perf_counter()
    float(fit()[-1])
    return (time.perf_counter() - start) / steps


def rounds(x, y, args):
    """Per-step seconds of each fit, rotating which goes first."""
    fits = [
        lambda: ours(x, y, args.steps, args.batch),
        lambda: ours_subsampled(x, y, args.steps, args.batch),
        lambda: theirs(x, y, args.steps),
    ]
    seconds = [[] for _ in fits]
    for r in range(args.rounds):
        for i in range(len(fits)):
            j = (i + r) % len(fits)
            seconds[j].append(fits[j]())
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    lines = [
        f"| N | ours, tf.data batches of {args.batch}, ms/step "
        f"| ours, subsampled_target of {args.batch}, ms/step "
        "| tfp.vi, full data, ms/step | tf.data / tfp.vi | subsampled / tfp.vi |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rows in args.rows:
        x, y = data(rows)
        a, b, c = (statistics.median(s) for s in rounds(x, y, args))
        lines.append(
            f"| {rows} | {a * 1e3:.3f} | {b * 1e3:.3f} | {c * 1e3:.3f} "
            f"| {a / c:.2f} | {b / c:.3f} |"
        )
    print(f"\nmedians of {args.rounds} rounds, {args.steps} steps, XLA\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
