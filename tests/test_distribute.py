"""tf.distribute.MirroredStrategy on two logical CPUs, in a subprocess.

Logical devices must be configured before TensorFlow initializes, which other
test modules in this process have already done; a fresh interpreter runs the
script below and prints its measurements as JSON.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": strategy.num_replicas_in_sync}


def surrogate():
    loc = tf.Variable(INIT[0], name="loc")
    scale = tfp.util.TransformedVariable(INIT[1], tfp.bijectors.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale), [loc, scale.pretransformed_input]


def per_replica_gradients(seeds):
    grads = []
    for seed in seeds:
        q, variables = surrogate()
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target, q, sample_size=4, gradient_estimator=DR, seed=seed
            )
        grads.append([g.numpy() for g in tape.gradient(loss, variables)])
    return [np.mean([g[i] for g in grads], axis=0) for i in range(2)]


# Keras path: one SGD(1) step moves the variables by minus the mean gradient.
# (jit_compile=True is not tried: XLA cannot place MirroredVariables on
# logical CPU devices, for any Keras model; it works on GPUs.)
for jit in (False,):
    with strategy.scope():
        q, variables = surrogate()
        model = SurrogatePosteriorModel(target, q, sample_size=4, gradient_estimator=DR, seed=7)
        model.compile(keras.optimizers.SGD(1.0), jit_compile=jit)
    before = [v.numpy() for v in variables]
    history = model.fit(epochs=1, steps_per_epoch=1, verbose=0)
    after = [v.numpy() for v in variables]
    seed = tf.constant([7, 0], tf.int32)
    expected = per_replica_gradients([samplers.fold_in(seed, tf.constant(r)) for r in range(2)])
    out[f"keras_jit{jit}"] = {
        "max_error": float(max(np.max(np.abs((b - a) - e)) for a, b, e in zip(after, before, expected))),
        "loss": history.history["loss"],
    }
    with strategy.scope():
        q, variables = surrogate()
        model = SurrogatePosteriorModel(target, q, sample_size=4, gradient_estimator=DR, seed=7)
        model.compile(keras.optimizers.Adam(0.05), jit_compile=jit)
    history = model.fit(epochs=3, steps_per_epoch=50, verbose=0)
    out[f"keras_fit_jit{jit}"] = history.history["loss"]

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
        return loss, [g * context.num_replicas_in_sync for g in grads], reduced

    return strategy.run(replica_fn, args=(seed,))


before = [v.numpy() for v in variables]
losses, local, reduced = step(tf.constant([5, 6], tf.int32))
after = [v.numpy() for v in variables]
local = [[g.numpy() for g in strategy.experimental_local_results(x)] for x in local]
reduced = [strategy.experimental_local_results(x)[0].numpy() for x in reduced]
mean_local = [np.mean(g, axis=0) for g in local]
expected = per_replica_gradients([samplers.fold_in(tf.constant([5, 6]), tf.constant(r)) for r in range(2)])
out["loop"] = {
    "losses": [float(x) for x in strategy.experimental_local_results(losses)],
    "reduced_vs_mean": float(max(np.max(np.abs(r - m)) for r, m in zip(reduced, mean_local))),
    "update_vs_mean": float(max(np.max(np.abs((b - a) - m)) for a, b, m in zip(after, before, mean_local))),
    "mean_vs_single_device": float(max(np.max(np.abs(m - e)) for m, e in zip(mean_local, expected))),
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
    return json.loads(line[len("RESULT ") :])


def test_two_replicas(results):
    assert results["replicas"] == 2


def test_keras_step_applies_the_mean_of_per_replica_gradients(results):
    # One SGD(1) step of model.fit moves the variables by minus the mean of the
    # gradients each replica computes with its own seed fold_in(seed, replica).
    assert results["keras_jitFalse"]["max_error"] < 1e-5


def test_keras_fit_trains_under_mirrored_strategy(results):
    losses = results["keras_fit_jitFalse"]
    assert len(losses) == 3 and losses[-1] < 0.05 < losses[0]


def test_custom_loop_all_reduce_is_the_mean_and_replicas_sample_independently(results):
    loop = results["loop"]
    first, second = loop["losses"]
    assert first != second  # each replica drew its own samples
    assert loop["reduced_vs_mean"] < 1e-6
    assert loop["update_vs_mean"] < 1e-6
    assert loop["mean_vs_single_device"] < 1e-5
