"""Gradient variance of iid against randomized quasi-Monte Carlo sampling, by S.

Issues 16 and 21. On a 10-d correlated Gaussian target, for a mean-field and a
full-rank Gaussian surrogate, prints the total gradient variance (summed over
parameters, from `--repeats` independent seeds) of REPARAMETERIZATION with
`sampling='iid'` and `sampling='rqmc'` for each sample size, their ratio, and
the least-squares slope of log variance on log S (iid: -1).

`--joint` adds the joint and mixture surrogates (issue 21): on the same
target, a `JointDistributionCoroutine` of two 5-d parts, the second's location
depending on the first's draw; TFP's factored builder for a structured event
(`{'a': [5], 'b': [5]}`); and on a two-component 2-d mixture target, a
`MixtureSameFamily(reparameterize=True)` surrogate (REPARAMETERIZATION) and
the same mixture with `MixtureStickingTheLanding`.

    python benchmarks/qmc_variance.py [--repeats 50] [--estimator REPARAMETERIZATION]
        [--joint]
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


def joint_problems(dim=DIM):
    """`{name: (target_log_prob_fn, surrogate, gradient_estimator)}`."""
    target = gaussian_target(dim)
    half = dim // 2
    v = [tf.Variable(np.full(half, x, np.float32)) for x in (0.3, 0.8, 0.1, 0.7)]

    def model():
        a = yield tfd.JointDistributionCoroutine.Root(
            tfd.Independent(tfd.Normal(v[0], v[1]), 1)
        )
        yield tfd.Independent(tfd.Normal(0.5 * a + v[2], v[3]), 1)

    def split_target(*parts):
        return target.log_prob(tf.concat(parts, -1))

    factored = tfp.experimental.vi.build_factored_surrogate_posterior(
        event_shape={"a": [half], "b": [half]}, seed=(4, 2)
    )
    bimodal = tfd.MixtureSameFamily(
        tfd.Categorical(logits=[0.2, 0.0]),
        tfd.Independent(tfd.Normal([[-1.5, 1.0], [1.5, -1.0]], 0.8), 1),
    )

    def mixture(reparameterize):
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.Variable([0.0, 0.4])),
            tfd.Independent(
                tfd.Normal(
                    tf.Variable([[-1.0, 0.5], [1.0, -0.5]]),
                    tf.Variable([[0.7, 0.9], [0.6, 1.1]]),
                ),
                1,
            ),
            reparameterize=reparameterize,
        )

    return {
        "dependent joint": (
            split_target,
            tfd.JointDistributionCoroutine(model),
            tve.GradientEstimators.REPARAMETERIZATION,
        ),
        "factored builder": (
            lambda a, b: target.log_prob(tf.concat([a, b], -1)),
            factored,
            tve.GradientEstimators.REPARAMETERIZATION,
        ),
        "mixture, reparameterized": (
            bimodal.log_prob,
            mixture(True),
            tve.GradientEstimators.REPARAMETERIZATION,
        ),
        "mixture, MixtureStickingTheLanding": (
            bimodal.log_prob,
            mixture(False),
            tve.estimators.MixtureStickingTheLanding(),
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
    parser.add_argument("--joint", action="store_true")
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
    if args.joint:
        for name, (
            target_log_prob_fn,
            surrogate,
            estimator,
        ) in joint_problems().items():
            results[name] = variance_by_sample_size(
                target_log_prob_fn,
                surrogate,
                sample_sizes=SAMPLE_SIZES,
                num_repeats=args.repeats,
                gradient_estimator=estimator,
            )
            print_table(name, results[name])
    return results


if __name__ == "__main__":
    main()
