"""tf.distribute.MirroredStrategy on two logical CPUs, in a subprocess.

Logical devices must be configured before TensorFlow initializes, which other
test modules in this process have already done; a fresh interpreter runs the
script below and prints what it measured as JSON: the variables before and
after distributed steps, and the same quantities computed independently on one
device (replica r of step t draws with `fold_in(seed_t, r)`).

The tests compare them exactly, in float32 arithmetic: multiplying a loss by a
power of two scales its gradient exactly, a two-replica all-reduce is one
float32 addition, and `SGD(1.0)` subtracts the gradient from the variable, so
every quantity below has one correct float32 value. Only Keras' loss metric,
a float32 running sum, is compared with a rounding bound.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS32 = float(np.finfo(np.float32).eps)

# One subprocess with two logical CPUs for the module: with the slow tests.
pytestmark = pytest.mark.slow

_SCRIPT = r"""
import json, sys
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import numpy as np
import tensorflow_probability as tfp
import tfp_vi_estimators as tve
from tfp_vi_estimators.keras_models import SurrogatePosteriorModel, replica_seed
from tensorflow_probability.python.internal import samplers

tfd = tfp.distributions
DR = tve.GradientEstimators.DOUBLY_REPARAMETERIZED
target = tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0]).log_prob
INIT = ([0.3, -0.2, 0.1], [1.0, 0.5, 2.0])
REPLICAS = 2
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": strategy.num_replicas_in_sync}


def surrogate():
    loc = tf.Variable(INIT[0], name="loc")
    scale = tfp.util.TransformedVariable(INIT[1], tfp.bijectors.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale), [loc, scale.pretransformed_input]


def listed(arrays):
    return [np.asarray(a).tolist() for a in arrays]


def single_device_step(q, variables, seed):
    # What each replica computes, on one device: loss and gradient for `seed`.
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            target, q, sample_size=4, gradient_estimator=DR, seed=seed
        )
    return loss, tape.gradient(loss, variables)


def replica_seeds(seed):
    return [samplers.fold_in(tf.convert_to_tensor(seed, tf.int32), tf.constant(r)) for r in range(REPLICAS)]


def reference_fit(optimizer, num_steps, generator_seed):
    # Single device: at step t replica r's seed is fold_in([seed, t], r); the
    # update uses the mean of the replicas' gradients.
    q, variables = surrogate()
    optimizer.build(variables)

    @tf.function(autograph=False)
    def step(t):
        losses, grads = [], []
        for seed in replica_seeds(tf.stack([generator_seed, t])):
            loss, g = single_device_step(q, variables, seed)
            losses.append(loss)
            grads.append(g)
        mean = [tf.add_n(gs) / REPLICAS for gs in zip(*grads)]
        optimizer.apply_gradients(zip(mean, variables))
        return tf.stack(losses)

    losses = [step(tf.constant(t)).numpy().tolist() for t in range(num_steps)]
    return losses, listed(variables)


# Keras path, one SGD(1) step: the variables move by minus the mean gradient.
# (jit_compile=True is not tried: XLA cannot place MirroredVariables on
# logical CPU devices, for any Keras model; it works on GPUs.)
with strategy.scope():
    q, variables = surrogate()
    model = SurrogatePosteriorModel(target, q, sample_size=4, gradient_estimator=DR, seed=7)
    model.compile(keras.optimizers.SGD(1.0))
before = listed(variables)
model.fit(epochs=1, steps_per_epoch=1, verbose=0)
q1, v1 = surrogate()
per_replica = [single_device_step(q1, v1, s)[1] for s in replica_seeds([7, 0])]
out["keras_step"] = {
    "before": before,
    "after": listed(variables),
    "replica_gradients": [listed(g) for g in per_replica],
}

# Keras path, a whole fit, against the single-device loop of mean gradients.
EPOCHS, STEPS = 3, 50
with strategy.scope():
    q, variables = surrogate()
    model = SurrogatePosteriorModel(target, q, sample_size=4, gradient_estimator=DR, seed=7)
    model.compile(keras.optimizers.Adam(0.05))
history = model.fit(epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0)
ref_losses, ref_variables = reference_fit(keras.optimizers.Adam(0.05), EPOCHS * STEPS, 7)
out["keras_fit"] = {
    "history": history.history["loss"],
    "variables": listed(variables),
    "reference_losses": ref_losses,
    "reference_variables": ref_variables,
    "steps_per_epoch": STEPS,
}

# Custom loop with strategy.run.
with strategy.scope():
    q, variables = surrogate()
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(variables)


@tf.function
def step(seed):
    def replica_fn(seed):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target, q, sample_size=4, gradient_estimator=DR, seed=replica_seed(seed)
            )
            scaled = loss / context.num_replicas_in_sync
        grads = tape.gradient(scaled, variables)
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, grads, reduced

    return strategy.run(replica_fn, args=(seed,))


before = listed(variables)
losses, local, reduced = step(tf.constant([5, 6], tf.int32))
q1, v1 = surrogate()
single = [single_device_step(q1, v1, s) for s in replica_seeds([5, 6])]
out["loop"] = {
    "before": before,
    "after": listed(variables),
    "losses": [float(x) for x in strategy.experimental_local_results(losses)],
    "scaled_gradients": [
        [g.numpy().tolist() for g in strategy.experimental_local_results(x)] for x in local
    ],
    "reduced": [strategy.experimental_local_results(x)[0].numpy().tolist() for x in reduced],
    "single_device_losses": [float(loss) for loss, _ in single],
    "single_device_gradients": [listed(g) for _, g in single],
}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    script = tmp_path_factory.mktemp("distribute") / "mirrored.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CI="true")
    run = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    results = json.loads(line[len("RESULT ") :])
    # Precondition of every test below: the strategy really has two replicas.
    assert results["replicas"] == 2
    return results


def _f32(values):
    return [np.asarray(v, np.float32) for v in values]


def test_keras_step_applies_the_mean_of_per_replica_gradients(results):
    # One SGD(1) step of model.fit: each replica's gradient of loss / 2 (its
    # own seed fold_in([7, 0], r)), summed by the all-reduce, subtracted.
    step = results["keras_step"]
    g0, g1 = (_f32(g) for g in step["replica_gradients"])
    for before, after, a, b in zip(
        _f32(step["before"]), _f32(step["after"]), g0, g1, strict=True
    ):
        half = np.float32(0.5)
        np.testing.assert_array_equal(after, before - (a * half + b * half))


def test_keras_fit_follows_the_single_device_mean_gradient_loop(results):
    # 150 Adam steps under MirroredStrategy land on the same float32 variables
    # as a one-device loop that averages the two replicas' gradients.
    fit = results["keras_fit"]
    for got, expected in zip(
        _f32(fit["variables"]), _f32(fit["reference_variables"]), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    # Keras' loss metric is a float32 running sum over the n = steps x replicas
    # losses of an epoch: its mean is within (n - 1) eps32 mean|loss| of the
    # exact mean.
    steps = fit["steps_per_epoch"]
    losses = np.asarray(fit["reference_losses"], np.float64).reshape(-1, steps * 2)
    bound = (losses.shape[1] - 1) * EPS32 * np.abs(losses).mean(axis=1)
    error = np.abs(np.asarray(fit["history"]) - losses.mean(axis=1))
    assert np.all(error <= bound), (error, bound)


def test_custom_loop_replicas_sample_independently_and_all_reduce_sums(results):
    loop = results["loop"]
    # Each replica's loss and gradient are the single-device ones for its own
    # seed fold_in(seed, r), and the two seeds give different draws.
    np.testing.assert_array_equal(loop["losses"], loop["single_device_losses"])
    assert loop["single_device_losses"][0] != loop["single_device_losses"][1]
    scaled = [_f32(per_variable) for per_variable in loop["scaled_gradients"]]
    for r, single in enumerate(loop["single_device_gradients"]):
        for per_variable, expected in zip(scaled, _f32(single), strict=True):
            np.testing.assert_array_equal(per_variable[r], expected / np.float32(2))
    # The all-reduce is their sum, and SGD(1) subtracts exactly that.
    for per_variable, reduced, before, after in zip(
        scaled,
        _f32(loop["reduced"]),
        _f32(loop["before"]),
        _f32(loop["after"]),
        strict=True,
    ):
        np.testing.assert_array_equal(reduced, per_variable[0] + per_variable[1])
        np.testing.assert_array_equal(after, before - reduced)
