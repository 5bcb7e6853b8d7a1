"""Keras `model.fit` against a hand-written XLA train step, same process.

Bayesian logistic regression (N=2000 synthetic rows, D=20, mean-field Normal
surrogate, Adam(0.05), sample_size 8, REPARAMETERIZATION). Two loops do the
same work per step (one `monte_carlo_variational_loss` with a fresh stateless
seed, its gradient, one Adam update):

- `keras`: `SurrogatePosteriorModel.compile(Adam(0.05), jit_compile=True,
  steps_per_execution=E)` then `model.fit(epochs=1, steps_per_epoch=steps,
  verbose=0)`;
- `hand`: `tf.function(jit_compile=True)` of the same step, seeded from a
  step counter, looping over `E` steps per call (one step per call for
  E = 1, the usual hand-written loop), called `steps / E` times from Python.

Both are compiled and warmed up first; then rounds alternate keras, hand,
keras, ... so drift on a shared machine hits both alike. Printed: the median
milliseconds per step of each, steps/s, and the ratio keras / hand (the
issue's target is <= 1.1).

    python benchmarks/keras_fit_vs_step.py [--rounds 7] [--steps 500]
        [--steps-per-execution 1]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

# The same problem as the whole-fit benchmark (this script's directory is on
# sys.path when it runs).
from fit_vs_tfp import problem  # noqa: E402

import tfp_vi_estimators as tve  # noqa: E402
from tfp_vi_estimators.keras_models import SurrogatePosteriorModel  # noqa: E402

tfd = tfp.distributions
ESTIMATOR = tve.GradientEstimators.REPARAMETERIZATION
SAMPLE_SIZE = 8


def surrogate(dim):
    return tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim), name="loc"),
        tfp.util.TransformedVariable(
            tf.ones(dim), tfp.bijectors.Softplus(), name="scale"
        ),
    )


def keras_runner(target_log_prob_fn, dim, steps_per_execution):
    """`run(steps)`: `steps` steps of `SurrogatePosteriorModel.fit`."""
    model = SurrogatePosteriorModel(
        target_log_prob_fn,
        surrogate(dim),
        sample_size=SAMPLE_SIZE,
        gradient_estimator=ESTIMATOR,
        seed=1,
    )
    model.compile(
        keras.optimizers.Adam(0.05),
        jit_compile=True,
        steps_per_execution=steps_per_execution,
    )

    def run(steps):
        history = model.fit(epochs=1, steps_per_epoch=steps, verbose=0)
        return history.history["loss"][-1]

    return run


def hand_runner(target_log_prob_fn, dim, steps_per_call):
    """`run(steps)`: a hand-written XLA train step, `steps_per_call` a call."""
    q = surrogate(dim)
    variables = list(q.trainable_variables)
    optimizer = keras.optimizers.Adam(0.05)
    optimizer.build(variables)
    step_counter = tf.Variable(0, dtype=tf.int32)

    def one_step():
        seed = tf.stack([tf.constant(1, tf.int32), step_counter.assign_add(1)])
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target_log_prob_fn,
                q,
                sample_size=SAMPLE_SIZE,
                gradient_estimator=ESTIMATOR,
                seed=seed,
            )
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    @tf.function(jit_compile=True)
    def train_steps():
        if steps_per_call == 1:
            return one_step()
        loss = tf.constant(0.0)
        for _ in tf.range(steps_per_call):
            loss = one_step()
        return loss

    def run(steps):
        for _ in range(max(1, steps // steps_per_call)):
            loss = train_steps()
        return float(loss)

    return run


def timed(run, steps):
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args(argv)
    target_log_prob_fn, dim = problem()
    runners = {
        "keras": keras_runner(target_log_prob_fn, dim, args.steps_per_execution),
        "hand": hand_runner(target_log_prob_fn, dim, args.steps_per_execution),
    }
    compile_s = {}
    for label, run in runners.items():
        start = time.perf_counter()
        run(args.steps_per_execution)
        compile_s[label] = time.perf_counter() - start
        run(args.steps)  # warm-up
    ms = {label: [] for label in runners}
    for _ in range(args.rounds):
        for label, run in runners.items():
            ms[label].append(timed(run, args.steps))
    keras_ms, hand_ms = (statistics.median(ms[k]) for k in ("keras", "hand"))
    print(
        f"steps_per_execution={args.steps_per_execution}, {args.steps} steps a "
        f"round, medians of {args.rounds} rounds"
    )
    for label, value in (("keras model.fit", keras_ms), ("hand tf.function", hand_ms)):
        key = label.split()[0]
        print(
            f"{label:17s} {value:.4f} ms/step  {1e3 / value:8.0f} steps/s  "
            f"first call {compile_s[key]:.2f} s"
        )
    print(f"ratio keras / hand: {keras_ms / hand_ms:.2f}")
    return keras_ms, hand_ms


if __name__ == "__main__":
    main()
