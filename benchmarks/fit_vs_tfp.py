"""Whole-fit time of `fit_surrogate_posterior` against `tfp.vi`'s, same process.

Bayesian logistic regression (N synthetic rows, D features, mean-field Normal
surrogate, Adam(0.05), sample_size 8), `num_steps` steps, eager loop or XLA.
Rounds alternate ours / tfp.vi; the medians and their ratio are printed.
First-call time (tracing and compiling) and later whole fits are reported
separately.

    python benchmarks/fit_vs_tfp.py [--rounds 3] [--steps 1000] [--xla]
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve

tfd = tfp.distributions


def problem(num_rows=2000, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_rows, dim)).astype(np.float32)
    w = rng.standard_normal(dim).astype(np.float32)
    y = (rng.random(num_rows) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)

    def target_log_prob_fn(weights):
        prior = tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(weights), -1)
        logits = tf.linalg.matvec(x, weights)
        likelihood = tfd.Bernoulli(logits=logits).log_prob(y)
        return prior + tf.reduce_sum(likelihood, -1)

    return target_log_prob_fn, dim


def fit_once(module, target_log_prob_fn, dim, steps, xla, seed):
    surrogate = tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(tf.ones(dim), tfp.bijectors.Softplus()),
    )
    start = time.perf_counter()
    losses = module.fit_surrogate_posterior(
        target_log_prob_fn,
        surrogate,
        tf.keras.optimizers.Adam(0.05),
        num_steps=steps,
        sample_size=8,
        jit_compile=xla,
        seed=seed,
    )
    float(losses[-1])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args()
    target_log_prob_fn, dim = problem()
    times = {"ours": [], "tfp.vi": []}
    for r in range(args.rounds):
        for label, module in (("ours", tve), ("tfp.vi", tfp.vi)):
            times[label].append(
                fit_once(module, target_log_prob_fn, dim, args.steps, args.xla, (r, 1))
            )
    ours, theirs = (statistics.median(times[k]) for k in ("ours", "tfp.vi"))
    mode = "XLA" if args.xla else "graph"
    print(
        f"whole fit, {args.steps} steps, {mode}: ours {ours:.2f} s, "
        f"tfp.vi {theirs:.2f} s, ratio {ours / theirs:.2f} (medians of {args.rounds})"
    )


if __name__ == "__main__":
    main()
