"""Gradient variance of iid against randomized quasi-Monte Carlo sampling, by S.

Issue 16. On a 10-d correlated Gaussian target, for a mean-field and a
full-rank Gaussian surrogate, prints the total gradient variance (summed over
parameters, from `--repeats` independent seeds) of REPARAMETERIZATION with
`sampling='iid'` and `sampling='rqmc'` for each sample size, their ratio, and
the least-squares slope of log variance on log S (iid: -1).

    python benchmarks/qmc_variance.py [--repeats 50] [--estimator REPARAMETERIZATION]
"""

import argparse
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.quasi_monte_carlo import variance_by_sample_size

tfd = tfp.distributions
DIM = 10
SAMPLE_SIZES = (4, 8, 16, 32, 64, 128, 256)


def gaussian_target(dim=DIM):
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(dim, dim)) / 3.0
    return tfd.MultivariateNormalTriL(
        rng.normal(size=dim).astype(np.float32),
        np.linalg.cholesky(factor @ factor.T + np.eye(dim)).astype(np.float32),
    )


def surrogates(dim=DIM):
    loc, scale = np.full(dim, 0.3, np.float32), np.full(dim, 0.8, np.float32)
    return {
        "mean-field": tfd.Independent(
            tfd.Normal(tf.Variable(loc), tf.Variable(scale)), 1
        ),
        "full-rank": tfd.MultivariateNormalTriL(
            tf.Variable(loc), tf.Variable(np.diag(scale))
        ),
    }


def print_table(name, result):
    print(f"\n{name} surrogate, {result['num_repeats']} seeds per cell\n")
    print("| S | iid variance | RQMC variance | iid / RQMC |")
    print("|---|---|---|---|")
    for s, iid, rqmc in zip(
        result["sample_sizes"], result["iid"], result["rqmc"], strict=True
    ):
        print(f"| {s} | {iid:.4g} | {rqmc:.4g} | {iid / rqmc:.1f} |")
    log_s = np.log(result["sample_sizes"])
    for sampling in ("iid", "rqmc"):
        slope = np.polyfit(log_s, np.log(result[sampling]), 1)[0]
        print(f"log-log slope, {sampling}: {slope:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--estimator", default="REPARAMETERIZATION")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    target = gaussian_target()
    results = {}
    for name, surrogate in surrogates().items():
        results[name] = variance_by_sample_size(
            target.log_prob,
            surrogate,
            sample_sizes=SAMPLE_SIZES,
            num_repeats=args.repeats,
            gradient_estimator=tve.GradientEstimators[args.estimator],
        )
        print_table(name, results[name])
    return results


if __name__ == "__main__":
    main()
