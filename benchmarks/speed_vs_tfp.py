"""Loss-plus-gradient step time: tfp_vi_estimators against tfp.vi, same process.

For each problem and estimator, both implementations are compiled with
`tf.function(jit_compile=True)` and timed alternately (ours, theirs, ours,
...) in rounds, so drift on a shared machine hits both alike. Reported: the
median milliseconds per step of each and their ratio (ours / tfp.vi), plus,
on the decoder target, our DOUBLY_REPARAMETERIZED (with its correct model
gradient) against our REPARAMETERIZATION.

    python benchmarks/speed_vs_tfp.py [--rounds 15] [--steps 10]
"""

import argparse
import time
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve

tfd = tfp.distributions
GE = tve.GradientEstimators
TFP_GE = tfp.vi.GradientEstimators


class GaussianProblem:
    """40-d correlated Gaussian target, full-rank Gaussian surrogate."""

    name = "gaussian-40d"

    def __init__(self, dim=40):
        rng = np.random.default_rng(0)
        a = rng.normal(size=(dim, dim)).astype(np.float32) / np.sqrt(dim)
        cov = a @ a.T + 0.5 * np.eye(dim, dtype=np.float32)
        self.target = tfd.MultivariateNormalTriL(
            rng.normal(size=dim).astype(np.float32),
            np.linalg.cholesky(cov).astype(np.float32),
        )
        self.loc = tf.Variable(tf.zeros([dim]))
        self.scale_tril = tfp.util.TransformedVariable(
            tf.eye(dim), tfp.bijectors.FillScaleTriL()
        )
        self.variables = [self.loc, *self.scale_tril.trainable_variables]

    def surrogate(self):
        return tfd.MultivariateNormalTriL(self.loc, self.scale_tril)

    def stopped_surrogate(self):
        return tfd.MultivariateNormalTriL(
            tf.stop_gradient(self.loc),
            tf.stop_gradient(tf.convert_to_tensor(self.scale_tril)),
        )

    def target_log_prob(self, z):
        return self.target.log_prob(z) - 20.0


class DecoderProblem(GaussianProblem):
    """p(z) p(x | z) with a 10-64-64-100 MLP decoder (model parameters)."""

    name = "decoder"

    def __init__(self, latent=10, data=100):
        self.decoder = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(64, activation="tanh"),
                tf.keras.layers.Dense(64, activation="tanh"),
                tf.keras.layers.Dense(data),
            ]
        )
        self.decoder.build((None, latent))
        self.x = tf.cast(np.random.default_rng(1).random(data) < 0.3, tf.float32)
        self.loc = tf.Variable(tf.zeros([latent]))
        self.scale_tril = tfp.util.TransformedVariable(
            tf.eye(latent), tfp.bijectors.FillScaleTriL()
        )
        self.variables = [
            self.loc,
            *self.scale_tril.trainable_variables,
            *self.decoder.trainable_variables,
        ]

    def target_log_prob(self, z):
        prior = tfd.MultivariateNormalDiag(tf.zeros_like(self.loc)).log_prob(z)
        flat = tf.reshape(z, [-1, z.shape[-1]])
        logits = tf.reshape(self.decoder(flat), tf.concat([tf.shape(z)[:-1], [-1]], 0))
        likelihood = tf.reduce_sum(tfd.Bernoulli(logits=logits).log_prob(self.x), -1)
        return prior + likelihood


def make_step(problem, loss_module, estimator, sample_size, k):
    ours = loss_module is tve

    @tf.function(jit_compile=True)
    def step(seed):
        with tf.GradientTape() as tape:
            kwargs = dict(
                sample_size=sample_size,
                importance_sample_size=k,
                gradient_estimator=estimator if ours else TFP_GE[estimator.name],
                seed=seed,
            )
            if not ours and estimator == GE.DOUBLY_REPARAMETERIZED:
                kwargs["stopped_surrogate_posterior"] = problem.stopped_surrogate()
            loss = loss_module.monte_carlo_variational_loss(
                problem.target_log_prob, problem.surrogate(), **kwargs
            )
        return loss, tape.gradient(loss, problem.variables)

    return step


def time_steps(step, steps, offset):
    start = time.perf_counter()
    for i in range(steps):
        loss, _ = step(tf.constant([offset + i, 7]))
    loss.numpy()
    return (time.perf_counter() - start) / steps * 1e3


def supported_by_tfp(estimator, k):
    if estimator == GE.SCORE_FUNCTION:
        return k == 1
    if estimator == GE.VIMCO:
        return k > 1
    return True


def run(rounds, steps, max_configs=None, estimators=tuple(GE)):
    """Rows of the speed table; `max_configs` / `estimators` trim it (tests)."""
    rows = []
    configs = [(GaussianProblem, 256, 1), (GaussianProblem, 32, 16)]
    configs += [(DecoderProblem, 256, 1), (DecoderProblem, 32, 16)]
    for make_problem, sample_size, k in configs[:max_configs]:
        problem = make_problem()
        for estimator in estimators:
            if estimator == GE.VIMCO and k == 1:
                continue
            ours = make_step(problem, tve, estimator, sample_size, k)
            theirs = None
            if supported_by_tfp(estimator, k):
                theirs = make_step(problem, tfp.vi, estimator, sample_size, k)
            for s in (ours, theirs):
                if s is not None:
                    time_steps(s, 3, 0)  # compile and warm up
            ours_ms, theirs_ms = [], []
            for r in range(rounds):
                ours_ms.append(time_steps(ours, steps, r * steps))
                if theirs is not None:
                    theirs_ms.append(time_steps(theirs, steps, r * steps))
            row = dict(
                problem=problem.name,
                S=sample_size,
                K=k,
                estimator=estimator.name,
                ours_ms=float(np.median(ours_ms)),
                tfp_ms=float(np.median(theirs_ms)) if theirs_ms else None,
            )
            row["ratio"] = row["ours_ms"] / row["tfp_ms"] if row["tfp_ms"] else None
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(r):
    tfp_ms = f"{r['tfp_ms']:.2f}" if r["tfp_ms"] else "refused"
    ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
    return (
        f"| {r['problem']} | {r['S']} | {r['K']} | {r['estimator']} | "
        f"{r['ours_ms']:.2f} | {tfp_ms} | {ratio} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| problem | S | K | estimator | ours ms | tfp.vi ms | ours/tfp |")
    print("|---|---|---|---|---|---|---|")
    rows = run(args.rounds, args.steps)
    print()
    for k in sorted({r["K"] for r in rows if r["problem"] == "decoder"}):
        by = {
            r["estimator"]: r for r in rows if r["problem"] == "decoder" and r["K"] == k
        }
        ratio = (
            by["DOUBLY_REPARAMETERIZED"]["ours_ms"]
            / by["REPARAMETERIZATION"]["ours_ms"]
        )
        print(
            f"decoder K={k}: our DOUBLY_REPARAMETERIZED / our REPARAMETERIZATION = {ratio:.2f}"
        )
    return rows


if __name__ == "__main__":
    main()
