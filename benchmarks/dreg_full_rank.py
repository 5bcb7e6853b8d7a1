"""DOUBLY_REPARAMETERIZED against REPARAMETERIZATION on full-rank and flow surrogates.

Issue 14, goal 3. One loss-plus-gradient step (seed -> loss, gradients) on

- a 100-d `MultivariateNormalTriL` surrogate of a 100-d correlated Gaussian
  target, sample_size 64, in graph mode (`tf.function`) and under XLA
  (`jit_compile=True`), ours and `tfp.vi` (given the stopped copy it needs);
- a masked autoregressive flow (`tfb.MaskedAutoregressiveFlow`, 8-d, two
  hidden layers of 32) on the same kind of target, graph mode, ours only
  (`tfp.vi`'s DReG needs a hand-built stopped copy, which a flow with a
  network does not have).

All steps of one table are timed alternately in rounds (each round runs every
configuration for `--steps` steps), so drift on a shared machine hits them
alike; printed: the median milliseconds per step and the ratio DReG /
REPARAMETERIZATION of the same implementation and mode.

    python benchmarks/dreg_full_rank.py [--rounds 15] [--steps 20]
"""

import argparse
import time
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.stopped_surrogate import stopped_copy

tfd, tfb = tfp.distributions, tfp.bijectors
DIM, SAMPLE_SIZE, FLOW_DIM = 100, 64, 8
ESTIMATORS = ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED")


def gaussian_target(dim, seed=0):
    """A correlated Gaussian target `log p(z)`."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    covariance = factor @ factor.T + np.eye(dim)
    target = tfd.MultivariateNormalTriL(
        rng.normal(size=dim).astype(np.float32),
        np.linalg.cholesky(covariance).astype(np.float32),
    )
    return target.log_prob


def full_rank_surrogate(dim):
    rng = np.random.default_rng(1)
    tril = np.tril(0.05 * rng.normal(size=(dim, dim))) + np.eye(dim)
    return tfd.MultivariateNormalTriL(
        tf.Variable(np.zeros(dim, np.float32)), tf.Variable(tril.astype(np.float32))
    )


def maf_surrogate(dim):
    made = tfb.AutoregressiveNetwork(params=2, hidden_units=[32, 32], event_shape=[dim])
    made.build([None, dim])
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(dim)), tfb.MaskedAutoregressiveFlow(made)
    )


def make_step(target, surrogate, implementation, estimator, jit_compile):
    """A compiled `seed -> (loss, gradients)`."""
    variables = surrogate.trainable_variables

    def loss(seed):
        if implementation.startswith("ours"):
            # "ours, stopped copy": the route before the pre-image (a stopped
            # copy's log_prob: forward solve), for comparison.
            copy = implementation == "ours, stopped copy"
            return tve.monte_carlo_variational_loss(
                target,
                surrogate,
                sample_size=SAMPLE_SIZE,
                gradient_estimator=tve.GradientEstimators[estimator],
                stopped_surrogate_posterior=stopped_copy(surrogate) if copy else None,
                seed=seed,
            )
        stopped = None
        if estimator == "DOUBLY_REPARAMETERIZED":
            stopped = stopped_copy(surrogate)
        return tfp.vi.monte_carlo_variational_loss(
            target,
            surrogate,
            sample_size=SAMPLE_SIZE,
            gradient_estimator=tfp.vi.GradientEstimators[estimator],
            stopped_surrogate_posterior=stopped,
            seed=seed,
        )

    @tf.function(jit_compile=jit_compile)
    def step(seed):
        with tf.GradientTape() as tape:
            value = loss(seed)
        return value, tape.gradient(value, variables)

    return step


def _time(step, steps, offset):
    start = time.perf_counter()
    for i in range(steps):
        value, _ = step(tf.constant([offset + i, 3]))
    value.numpy()
    return (time.perf_counter() - start) / steps * 1e3


def time_alternating(steps_by_name, rounds, steps):
    """`{name: median ms per step}`, every step timed once per round, in turn."""
    for step in steps_by_name.values():  # compile and warm up
        _time(step, 3, 0)
    times = {name: [] for name in steps_by_name}
    for r in range(rounds):
        for name, step in steps_by_name.items():
            times[name].append(_time(step, steps, 1000 * r))
    return {name: float(np.median(t)) for name, t in times.items()}


def full_rank_table(rounds, steps):
    target, surrogate = gaussian_target(DIM), full_rank_surrogate(DIM)
    steps_by_name = {
        (impl, mode, est): make_step(target, surrogate, impl, est, mode == "xla")
        for impl in ("ours", "ours, stopped copy", "tfp.vi")
        for mode in ("graph", "xla")
        for est in ESTIMATORS
    }
    return time_alternating(steps_by_name, rounds, steps)


def flow_table(rounds, steps):
    target, surrogate = gaussian_target(FLOW_DIM), maf_surrogate(FLOW_DIM)
    steps_by_name = {
        ("ours", "graph", est): make_step(target, surrogate, "ours", est, False)
        for est in ESTIMATORS
    }
    return time_alternating(steps_by_name, rounds, steps)


def print_table(title, medians):
    print(f"\n{title}\n")
    print("| implementation | mode | REPARAM ms | DReG ms | DReG / REPARAM |")
    print("|---|---|---|---|---|")
    for impl, mode in sorted({k[:2] for k in medians}):
        rep = medians[(impl, mode, "REPARAMETERIZATION")]
        dreg = medians[(impl, mode, "DOUBLY_REPARAMETERIZED")]
        print(f"| {impl} | {mode} | {rep:.2f} | {dreg:.2f} | {dreg / rep:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    full_rank = full_rank_table(args.rounds, args.steps)
    print_table(
        f"{DIM}-d MultivariateNormalTriL surrogate, sample_size {SAMPLE_SIZE}",
        full_rank,
    )
    flow = flow_table(args.rounds, args.steps)
    print_table(
        f"{FLOW_DIM}-d masked autoregressive flow, sample_size {SAMPLE_SIZE}", flow
    )
    return full_rank, flow


if __name__ == "__main__":
    main()
