"""The adaptive score weight's step against DOUBLY_REPARAMETERIZED's: the cost goal.

`DoublyReparameterized(score_weight='adaptive')` evaluates the target once
and differentiates it once, as DOUBLY_REPARAMETERIZED does; on top it reads
`log q_phi(stop z)` and runs one more backward pass through the sampling map
and `log q` (not the target). Goal (issue 21): at most 1.5x a
DOUBLY_REPARAMETERIZED step.

Each configuration compiles one training step per estimator with XLA (loss,
gradients, estimator state, an Adam update, as `fit_surrogate_posterior` runs
it) and times `--steps` steps of each in alternating rounds; medians over
rounds, ratio adaptive / DOUBLY_REPARAMETERIZED (and REPARAMETERIZATION's for
scale). Problems: a Bayesian logistic regression (N = 2000 rows, D = 20,
mean-field), the same with a full-rank surrogate, and a 100-d correlated
Gaussian with a full-rank surrogate at K = 1 and K = 4.

    python benchmarks/adaptive_score_weight_cost.py [--rounds 7] [--steps 200]
"""

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.problems import logistic_regression_data
from tfp_vi_estimators.training_step import loss_and_parts
from tfp_vi_estimators.variational_loss import check_arguments, evaluate

tfd, tfb = tfp.distributions, tfp.bijectors

ARMS = {
    "REPARAMETERIZATION": lambda: GradientEstimators.REPARAMETERIZATION,
    "DOUBLY_REPARAMETERIZED": lambda: GradientEstimators.DOUBLY_REPARAMETERIZED,
    "adaptive": lambda: estimators.DoublyReparameterized(score_weight="adaptive"),
}


def logistic_regression():
    x, y, _ = logistic_regression_data(2000, 20, 0)

    def target(w):
        prior = tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(w), -1)
        likelihood = tfd.Bernoulli(logits=tf.linalg.matvec(x, w)).log_prob(y)
        return prior + tf.reduce_sum(likelihood, -1)

    return target, 20


def correlated_gaussian(dim=100):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((dim, dim)).astype(np.float32) / np.sqrt(dim)
    covariance = (a @ a.T + 0.1 * np.eye(dim)).astype(np.float32)
    return tfd.MultivariateNormalTriL(
        tf.zeros(dim), tf.linalg.cholesky(covariance)
    ).log_prob, dim


def mean_field(dim):
    return tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(tf.ones(dim), tfb.Softplus()),
    )


def full_rank(dim):
    return tfd.MultivariateNormalTriL(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(tf.eye(dim), tfb.FillScaleTriL()),
    )


CONFIGURATIONS = [
    ("logistic regression, mean-field, S=8", logistic_regression, mean_field, 8, 1),
    ("logistic regression, full-rank, S=8", logistic_regression, full_rank, 8, 1),
    ("100-d Gaussian, full-rank, S=8", correlated_gaussian, full_rank, 8, 1),
    ("100-d Gaussian, full-rank, S=2, K=4", correlated_gaussian, full_rank, 2, 4),
]


def compiled_steps(target, surrogate, estimator, sample_size, k, steps):
    """A function running `steps` training steps in one XLA program."""
    config = check_arguments(
        target,
        surrogate,
        sample_size=sample_size,
        importance_sample_size=k,
        gradient_estimator=estimator,
    )
    variables = list(surrogate.trainable_variables)
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(variables)
    estimator = config.estimator
    zeros = [tf.zeros(v.shape, v.dtype) for v in variables]

    def body(t, state):
        seed = tf.stack([tf.constant(1), t])
        _, parts = loss_and_parts(lambda: evaluate(config, seed), variables)
        grads, state = estimator.combine(parts, state)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return t + 1, state

    @tf.function(jit_compile=True, autograph=False)
    def run(start):
        state = estimator.initial_state(zeros)
        return tf.while_loop(lambda t, _: t < start + steps, body, (start, state))[0]

    return run


def measure(rounds, steps):
    rows = []
    for label, make_target, make_surrogate, sample_size, k in CONFIGURATIONS:
        target, dim = make_target()
        runs = {
            name: compiled_steps(
                target, make_surrogate(dim), arm(), sample_size, k, steps
            )
            for name, arm in ARMS.items()
        }
        for run in runs.values():  # compile
            run(tf.constant(0)).numpy()
        times = {name: [] for name in runs}
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                started = time.perf_counter()
                runs[name](tf.constant(steps * (r + 1))).numpy()
                times[name].append((time.perf_counter() - started) / steps * 1e3)
        medians = {name: statistics.median(t) for name, t in times.items()}
        rows.append((label, medians))
    return rows


def table(rows):
    lines = [
        "| problem | REPARAMETERIZATION ms | DOUBLY_REPARAMETERIZED ms | "
        "adaptive ms | adaptive / DR |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, m in rows:
        ratio = m["adaptive"] / m["DOUBLY_REPARAMETERIZED"]
        lines.append(
            f"| {label} | {m['REPARAMETERIZATION']:.3f} | "
            f"{m['DOUBLY_REPARAMETERIZED']:.3f} | {m['adaptive']:.3f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(table(measure(args.rounds, args.steps)))


if __name__ == "__main__":
    main()
