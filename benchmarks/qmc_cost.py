"""Step time of `sampling='rqmc'` against iid sampling, on bijector-transformed surrogates.

Issue 21 goal 4: randomized quasi-Monte Carlo at iid cost (at most 1.3x the
iid step). For each problem and gradient estimator, two compiled fits of
`--steps` Adam(0.02) steps (`sample_size` 8, each step: loss, gradient,
update, inside one `tf.function(jit_compile=True)` `tf.while_loop`, as
`fit_surrogate_posterior` runs them) are timed alternately (iid, rqmc, iid,
...) over `--rounds` rounds after a warm-up call; the table gives the median
microseconds per step of each and the ratio rqmc / iid.

Problems:

- `brownian_motion`: Inference Gym's BrownianMotionMissingMiddleObservations
  (30-d), a mean-field Normal pushed through
  `model.default_event_space_bijector` (a `Blockwise` of 30 parts), built by
  `tfp.experimental.vi.build_factored_surrogate_posterior` (a
  `DeferredModule`). Skipped if `inference_gym` is not installed.
- `log_normal`: a 10-d mean-field Normal through `tfb.Exp()`, on a Gamma
  target (a one-line non-affine bijector).
- `full_rank`: a 10-d `MultivariateNormalTriL` (an affine bijector) on a
  correlated Gaussian.
- `factored_joint`: `build_factored_surrogate_posterior` for a structured
  event (a `JointMap` of Softplus and Identity over a joint of normals), on a
  Gamma and Normal target.
- `asvi_chain`: `build_asvi_surrogate_posterior` of a 10-step Gaussian random
  walk (a joint of dependent parts, drawn under `tf.vectorized_map`).
- `mixture`: a two-component `MixtureSameFamily(reparameterize=True)`.

`--fit N` also times one whole `fit_surrogate_posterior(num_steps=N,
jit_compile=True)` per arm and round (tracing and XLA compilation included),
as a user sees it.

    python benchmarks/qmc_cost.py [--rounds 7] [--steps 200] [--fit 2000]
        [--problems brownian_motion log_normal full_rank]
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.variational_loss import check_arguments, evaluate_loss

tfd, tfb = tfp.distributions, tfp.bijectors
SAMPLE_SIZE = 8
SAMPLINGS = ("iid", "rqmc")
# Wall time, and this process's CPU time (all threads): on a shared machine
# the CPU time is the steadier measure of the work a step does.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
ESTIMATORS = ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED")


def brownian_motion():
    """`(target_log_prob_fn, surrogate builder)`, or `None` without the gym."""
    try:
        from inference_gym import using_tensorflow as gym
    except ImportError:
        return None
    model = gym.targets.VectorModel(
        gym.targets.BrownianMotionMissingMiddleObservations()
    )

    def surrogate():
        return tfp.experimental.vi.build_factored_surrogate_posterior(
            event_shape=model.event_shape,
            bijector=model.default_event_space_bijector,
        )

    return model.unnormalized_log_prob, surrogate


def log_normal(dim=10):
    target = tfd.Independent(
        tfd.Gamma(np.linspace(1.5, 4.0, dim, dtype=np.float32), 2.0), 1
    )

    def surrogate():
        scale = tfp.util.TransformedVariable(tf.fill([dim], 0.5), tfb.Softplus())
        base = tfd.Independent(tfd.Normal(tf.Variable(tf.zeros(dim)), scale), 1)
        return tfd.TransformedDistribution(base, tfb.Exp())

    return target.log_prob, surrogate


def full_rank(dim=10):
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(dim, dim)) / 3.0
    target = tfd.MultivariateNormalTriL(
        rng.normal(size=dim).astype(np.float32),
        np.linalg.cholesky(factor @ factor.T + np.eye(dim)).astype(np.float32),
    )

    def surrogate():
        return tfd.MultivariateNormalTriL(
            tf.Variable(tf.zeros(dim)), tf.Variable(tf.eye(dim) * 0.8)
        )

    return target.log_prob, surrogate


def factored_joint():
    """TFP's factored builder for a structured event: a JointMap over a joint base."""
    target = tfd.JointDistributionNamed(
        dict(
            rate=tfd.Independent(tfd.Gamma(np.float32([2.0, 3.0, 4.0]), 1.5), 1),
            x=tfd.Independent(tfd.Normal(np.float32([1.0, -1.0]), [0.5, 2.0]), 1),
        )
    )

    def surrogate():
        return tfp.experimental.vi.build_factored_surrogate_posterior(
            event_shape={"rate": [3], "x": [2]},
            bijector={"rate": tfb.Softplus(), "x": tfb.Identity()},
            seed=(4, 2),
        )

    return lambda rate, x: target.log_prob(dict(rate=rate, x=x)), surrogate


def asvi_chain(length=10):
    """ASVI of a Gaussian random walk: a vectorized joint of dependent parts."""

    @tfd.JointDistributionCoroutineAutoBatched
    def prior():
        previous = yield tfd.Normal(0.0, 1.0, name="x0")
        for t in range(1, length):
            previous = yield tfd.Normal(previous, 0.5, name=f"x{t}")

    def target(*xs):
        observed = tf.linspace(0.0, 2.0, length)
        return prior.log_prob(xs) + tf.reduce_sum(
            tfd.Normal(tf.stack(xs, -1), 0.3).log_prob(observed), -1
        )

    def surrogate():
        return tfp.experimental.vi.build_asvi_surrogate_posterior(prior, seed=(4, 2))

    return target, surrogate


def mixture():
    """A reparameterized two-component mixture (stratified component choice)."""
    target = tfd.MixtureSameFamily(
        tfd.Categorical(logits=[0.2, 0.0]),
        tfd.Independent(tfd.Normal([[-1.5, 1.0], [1.5, -1.0]], 0.8), 1),
    )

    def surrogate():
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.Variable([0.0, 0.4])),
            tfd.Independent(
                tfd.Normal(
                    tf.Variable([[-1.0, 0.5], [1.0, -0.5]]),
                    tfp.util.TransformedVariable(tf.fill([2, 2], 0.8), tfb.Softplus()),
                ),
                1,
            ),
            reparameterize=True,
        )

    return target.log_prob, surrogate


PROBLEMS = {
    "brownian_motion": brownian_motion,
    "log_normal": log_normal,
    "full_rank": full_rank,
    "factored_joint": factored_joint,
    "asvi_chain": asvi_chain,
    "mixture": mixture,
}


def compiled_fit(target_log_prob_fn, surrogate, sampling, estimator, steps):
    """A compiled `seed -> loss` running `steps` optimizer steps."""
    config = check_arguments(
        target_log_prob_fn,
        surrogate,
        sample_size=SAMPLE_SIZE,
        gradient_estimator=tve.GradientEstimators[estimator],
        sampling=sampling,
    )
    variables = surrogate.trainable_variables
    optimizer = tf.keras.optimizers.Adam(0.02)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def run(seed):
        loss = tf.constant(0.0)
        for step in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = tf.cast(
                    evaluate_loss(config, tf.stack([seed, step])), tf.float32
                )
            optimizer.apply_gradients(
                zip(tape.gradient(loss, variables), variables, strict=True)
            )
        return loss

    return run


def time_steps(target_log_prob_fn, make_surrogate, estimator, rounds, steps):
    """Median microseconds per step of each sampling, timed alternately."""
    runs = {
        sampling: compiled_fit(
            target_log_prob_fn, make_surrogate(), sampling, estimator, steps
        )
        for sampling in SAMPLINGS
    }
    for run in runs.values():
        run(tf.constant(0)).numpy()  # trace, compile and warm up
    times = {(sampling, clock): [] for sampling in SAMPLINGS for clock in CLOCKS}
    for r in range(rounds):
        for sampling, run in runs.items():
            start = {clock: read() for clock, read in CLOCKS.items()}
            run(tf.constant(r + 1)).numpy()
            for clock, read in CLOCKS.items():
                elapsed = read() - start[clock]
                times[sampling, clock].append(elapsed / steps * 1e6)
    return {key: statistics.median(t) for key, t in times.items()}


def time_fits(target_log_prob_fn, make_surrogate, estimator, rounds, num_steps):
    """Median seconds (wall and CPU) of one whole `fit_surrogate_posterior`
    (tracing and XLA compilation included) per sampling, alternating."""
    times = {(sampling, clock): [] for sampling in SAMPLINGS for clock in CLOCKS}
    for _ in range(rounds):
        for sampling in SAMPLINGS:
            start = {clock: read() for clock, read in CLOCKS.items()}
            tve.fit_surrogate_posterior(
                target_log_prob_fn,
                make_surrogate(),
                tf.keras.optimizers.Adam(0.02),
                num_steps,
                sample_size=SAMPLE_SIZE,
                gradient_estimator=tve.GradientEstimators[estimator],
                jit_compile=True,
                sampling=sampling,
                seed=(1, 2),
            )
            for clock, read in CLOCKS.items():
                times[sampling, clock].append(read() - start[clock])
    return {key: statistics.median(t) for key, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--fit", type=int, default=0, help="whole-fit steps; 0: off")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument(
        "--threads", type=int, default=1, help="TF intra/inter-op threads; 0: TF's"
    )
    args = parser.parse_args(argv)
    if args.threads:  # small steps: one thread each avoids pool hand-offs
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        "| problem | estimator | iid us/step | rqmc us/step | rqmc / iid "
        "| iid CPU us/step | rqmc CPU us/step | rqmc / iid (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.problems:
        problem = PROBLEMS[name]()
        if problem is None:
            print(f"| {name} | skipped: inference_gym is not installed |")
            continue
        for estimator in args.estimators:
            row = dict(problem=name, estimator=estimator)
            row.update(time_steps(*problem, estimator, args.rounds, args.steps))
            cells = []
            for clock in CLOCKS:
                iid, rqmc = row["iid", clock], row["rqmc", clock]
                cells.append(f"{iid:.1f} | {rqmc:.1f} | {rqmc / iid:.2f}")
            if args.fit:
                seconds = time_fits(*problem, estimator, args.rounds, args.fit)
                row["fit_s"] = seconds
                cells += [
                    f"whole fit ({clock}): {seconds['iid', clock]:.1f} s vs "
                    f"{seconds['rqmc', clock]:.1f} s "
                    f"({seconds['rqmc', clock] / seconds['iid', clock]:.2f}x)"
                    for clock in CLOCKS
                ]
            print(f"| {name} | {estimator} | " + " | ".join(cells) + " |", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
