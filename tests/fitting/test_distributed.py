"""fit_surrogate_posterior inside the scope of a tf.distribute strategy.

One replica (no strategy, `OneDeviceStrategy`, a one-device
`MirroredStrategy`): the fit is today's, bit for bit, in this process. Two
replicas: a `MirroredStrategy` on two logical CPUs, which must be configured
before TensorFlow initializes, so a fresh interpreter runs `_SCRIPT` and prints
what it measured as JSON.

Replica r of step t draws `sample_size / 2` samples with
`tf.random.experimental.stateless_fold_in(seed[t], r)`, where `seed[t]` is the
single-replica step seed; the
script recomputes each replica's loss and gradient on one device with
`monte_carlo_variational_loss`, and the distributed step must report their
mean.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.fitting import fit_surrogate_posterior

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fit(problem, strategy, checkpoint_dir=None, jit_compile=None):
    with strategy.scope():
        q = problem.surrogate()
        trace = fit_surrogate_posterior(
            problem.target,
            q,
            keras.optimizers.Adam(0.1),
            12,
            sample_size=4,
            seed=problem.seed,
            progress=False,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=5 if checkpoint_dir else None,
            jit_compile=jit_compile,
        )
    return trace, [np.asarray(v) for v in q.trainable_variables]


@pytest.mark.parametrize(
    "make_strategy",
    [
        lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
        lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
    ],
    ids=["one_device", "mirrored_one_device"],
)
@pytest.mark.parametrize("jit_compile", [None, True])
def test_one_replica_strategy_fits_exactly_as_without_one(
    make_strategy, jit_compile, problem, tmp_path
):
    expected, expected_variables = _fit(
        problem, tf.distribute.get_strategy(), jit_compile=jit_compile
    )
    got, variables = _fit(problem, make_strategy(), str(tmp_path), jit_compile)
    np.testing.assert_array_equal(got, expected)
    for g, e in zip(variables, expected_variables, strict=True):
        np.testing.assert_array_equal(g, e)


def _fit_with_a_learned_target(strategy):
    with strategy.scope():
        target_loc = tf.Variable([1.0, 2.0], name="target_loc")
        q = tfp.distributions.MultivariateNormalDiag(
            tf.Variable([0.0, 0.0]), [1.0, 1.0]
        )
        trace = fit_surrogate_posterior(
            lambda z: (
                -0.5 * tf.reduce_sum((z - target_loc) ** 2, -1)
                - 0.1 * tf.reduce_sum(target_loc**2)
            ),
            q,
            keras.optimizers.SGD(0.1),
            8,
            sample_size=2,
            seed=(1, 2),
            progress=False,
        )
    return trace, np.asarray(target_loc)


def test_one_replica_strategy_trains_the_targets_variables_too():
    # The loss reads a variable of the target: it is trained, as without a
    # strategy (`tfp.vi` trains every variable the loss reads).
    expected, expected_loc = _fit_with_a_learned_target(tf.distribute.get_strategy())
    got, loc = _fit_with_a_learned_target(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert not np.array_equal(expected_loc, [1.0, 2.0])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loc, expected_loc)


_SCRIPT = r"""
import json, tempfile
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
import keras
import numpy as np
import tensorflow_probability as tfp
import tfp_vi_estimators as tve
from tfp_vi_estimators.minibatch import minibatch_target

tfd = tfp.distributions
P = tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
SEED = (17, 42)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": strategy.num_replicas_in_sync}


def surrogate():
    loc = tf.Variable([0.3, -0.2, 0.1], name="loc")
    scale = tfp.util.TransformedVariable(
        [1.0, 0.5, 2.0], tfp.bijectors.Softplus(), name="scale"
    )
    return tfd.MultivariateNormalDiag(loc, scale)


def replicas_of(q):
    return [
        [np.asarray(c).tolist() for c in strategy.experimental_local_results(v)]
        for v in q.trainable_variables
    ]


def trace_loss_and_gradients(tq):
    return tq.loss, tq.gradients


def fit(q, optimizer, num_steps, sample_size, **kwargs):
    return tve.fit_surrogate_posterior(
        P.log_prob, q, optimizer, num_steps, sample_size=sample_size,
        seed=kwargs.pop("seed", SEED), progress=False, **kwargs,
    )


def error(**kwargs):
    try:
        with strategy.scope():
            fit(surrogate(), keras.optimizers.SGD(0.1), 2, **kwargs)
    except ValueError as e:
        return str(e)
    return None


# 1. The first step's all-reduced loss and gradient, and each replica's.
with strategy.scope():
    q = surrogate()
    loss, grads = fit(
        q, keras.optimizers.SGD(0.0), 1, 4, trace_fn=trace_loss_and_gradients
    )
out["step_loss"] = float(loss[0])
out["step_grads"] = [np.asarray(g[0]).tolist() for g in grads]
step_seed = tfp.random.split_seed(tfp.random.sanitize_seed(SEED, salt="minimize"), 2)[0]
out["replica_losses"], out["replica_grads"] = [], []
for r in range(2):
    q = surrogate()
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            P.log_prob, q, sample_size=2, seed=tf.random.experimental.stateless_fold_in(step_seed, r)
        )
    out["replica_losses"].append(float(loss))
    out["replica_grads"].append(
        [np.asarray(g).tolist() for g in tape.gradient(loss, q.trainable_variables)]
    )

# 2. Unbiased: gradients at fixed parameters (SGD(0)) over many step seeds.
STEPS = 400
with strategy.scope():
    _, grads = fit(
        surrogate(), keras.optimizers.SGD(0.0), STEPS, 4,
        trace_fn=trace_loss_and_gradients,
    )
out["distributed_grads"] = [np.asarray(g).tolist() for g in grads]
_, grads = fit(
    surrogate(), keras.optimizers.SGD(0.0), STEPS, 4,
    trace_fn=trace_loss_and_gradients,
)
out["single_grads"] = [np.asarray(g).tolist() for g in grads]
q = surrogate()
with tf.GradientTape() as tape:
    kl = tfd.kl_divergence(q, P)  # the loss's expectation: the target is normalized
out["exact_grads"] = [np.asarray(g).tolist() for g in tape.gradient(kl, q.trainable_variables)]

# 3. A fit with Adam, eagerly and with XLA: replicas end equal.
for jit in (False, True):
    with strategy.scope():
        q = surrogate()
        losses = fit(q, keras.optimizers.Adam(0.1), 150, 8, jit_compile=jit or None)
    out[f"adam_jit{jit}"] = dict(
        loss=np.asarray(losses).tolist(), replicas=replicas_of(q),
        mean=np.asarray(q.mean()).tolist(), stddev=np.asarray(q.stddev()).tolist(),
    )

# 4. Checkpoints: 20 steps then 40 on the same directory equal 40 at once.
runs = {}
for name, steps in (("resumed", (20, 40)), ("uninterrupted", (40,))):
    directory = tempfile.mkdtemp()
    for num_steps in steps:
        with strategy.scope():
            q = surrogate()
            losses = fit(
                q, keras.optimizers.Adam(0.1), num_steps, 4,
                checkpoint_dir=directory, checkpoint_every=5,
            )
    runs[name] = dict(loss=np.asarray(losses).tolist(), replicas=replicas_of(q))
out["checkpoints"] = runs

# 5. The non-finite guard: a target undefined beyond 2.5 in its first coordinate.
def undefined_far_out(z):
    return tf.where(z[..., 0] > 2.5, np.nan, P.log_prob(z))

with strategy.scope():
    q = surrogate()
    try:
        tve.fit_surrogate_posterior(
            undefined_far_out, q, keras.optimizers.SGD(0.01), 500, sample_size=8,
            seed=SEED, progress=False,
        )
        out["non_finite"] = None
    except tve.fitting.NonFiniteLossError as e:
        out["non_finite"] = dict(step=e.step, message=str(e), replicas=replicas_of(q))

# 6. Clear errors before any step.
out["odd_sample_size"] = error(sample_size=3)
dataset = tf.data.Dataset.from_tensor_slices(tf.zeros([9, 3])).batch(3, drop_remainder=True)
target = minibatch_target(
    lambda z: P.log_prob(z), lambda batch, z: tf.zeros(tf.shape(z)[:-1])[..., None]
    + tf.zeros([3]), dataset, num_examples=9,
)
try:
    with strategy.scope():
        tve.fit_surrogate_posterior(target, surrogate(), keras.optimizers.SGD(0.1), 2,
                                    sample_size=2, seed=SEED, progress=False)
    out["odd_batch"] = None
except ValueError as e:
    out["odd_batch"] = str(e)
try:
    with strategy.scope():
        q = surrogate()
        tf.function(lambda: fit(q, keras.optimizers.SGD(0.1), 2, 2), autograph=False)()
    out["in_function"] = None
except ValueError as e:
    out["in_function"] = str(e)

# 6b. Clipping acts on the mean gradient, as in one process: one SGD(1) step
# with `global_clipnorm` moves the variables by the clipped mean gradient
# (`before`: the same step with SGD(0); all in the loop's variable order).
def gradients_and_parameters(tq):
    return tq.gradients, tq.parameters


clipped = {}
for name, optimizer in (
    ("before", keras.optimizers.SGD(0.0)),
    ("after", keras.optimizers.SGD(1.0, global_clipnorm=0.01)),
):
    with strategy.scope():
        q = surrogate()
        grads, parameters = fit(
            q, optimizer, 1, 4, trace_fn=gradients_and_parameters
        )
    clipped[name] = [np.asarray(p[0]).tolist() for p in parameters]
    clipped[name + "_grads"] = [np.asarray(g[0]).tolist() for g in grads]
out["clipped"] = clipped

# 7. Minibatched data, sharded: a conjugate Normal model,
# x_i ~ Normal(mu, 2), mu ~ Normal(0, 10), N = 1000 rows, global batches of 50.
N, B, SIGMA = 1000, 50, 2.0
X = np.random.default_rng(0).normal(1.5, SIGMA, N).astype(np.float32)
precision = 1 / 10.0**2 + N / SIGMA**2
out["posterior"] = [float(X.sum() / SIGMA**2 / precision), float(precision**-0.5)]


def mu_prior(mu):
    return tfd.Normal(0.0, 10.0).log_prob(mu)


def mu_likelihood(batch, mu):
    return tfd.Normal(mu[..., None], SIGMA).log_prob(batch)


def mu_target():  # a fresh dataset: the same seeded order in every fit
    data = tf.data.Dataset.from_tensor_slices(X).shuffle(N, seed=1)
    return minibatch_target(
        mu_prior, mu_likelihood, data.batch(B, drop_remainder=True), N
    )


def mu_surrogate():
    return tfd.Normal(
        tf.Variable(0.0, name="loc"),
        tfp.util.TransformedVariable(1.0, tfp.bijectors.Exp(), name="scale"),
    )


def mu_fit(q, optimizer, num_steps, **kwargs):
    return tve.fit_surrogate_posterior(
        mu_target(), q, optimizer, num_steps, sample_size=8, seed=SEED,
        progress=False, **kwargs,
    )


# 7a. Step 0: replica r reads rows [25 r, 25 r + 25) of the first global batch
# and scales them by N / 25; the step reports the mean of the two.
with strategy.scope():
    loss, grads = mu_fit(
        mu_surrogate(), keras.optimizers.SGD(0.0), 1, trace_fn=trace_loss_and_gradients
    )
out["mb_step_loss"] = float(loss[0])
out["mb_step_grads"] = [float(g[0]) for g in grads]
first_batch = next(iter(mu_target().dataset)).numpy()
out["mb_replica_losses"], out["mb_replica_grads"] = [], []
for r in range(2):
    half = first_batch[25 * r : 25 * r + 25]
    q = mu_surrogate()
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            lambda mu, half=half: mu_prior(mu)
            + N / 25 * tf.reduce_sum(mu_likelihood(half, mu), -1),
            q, sample_size=4, seed=tf.random.experimental.stateless_fold_in(step_seed, r),
        )
    out["mb_replica_losses"].append(float(loss))
    out["mb_replica_grads"].append(
        [float(g) for g in tape.gradient(loss, q.trainable_variables)]
    )

# 7b. Unbiased: 400 steps (20 epochs) at fixed parameters; the exact gradient
# of the expected full-data loss is that of KL(q || posterior).
with strategy.scope():
    _, grads = mu_fit(
        mu_surrogate(), keras.optimizers.SGD(0.0), 400, trace_fn=trace_loss_and_gradients
    )
out["mb_grads"] = np.stack([np.asarray(g) for g in grads], -1).tolist()
q = mu_surrogate()
with tf.GradientTape() as tape:
    kl = tfd.kl_divergence(q, tfd.Normal(*out["posterior"]))
out["mb_exact_grads"] = [float(g) for g in tape.gradient(kl, q.trainable_variables)]

# 7c. A minibatch fit with XLA reaches the closed form; replicas end equal.
with strategy.scope():
    q = mu_surrogate()
    _, means, sds = mu_fit(
        q, keras.optimizers.Adam(0.1), 1500, jit_compile=True,
        trace_fn=lambda tq: (tq.loss, q.mean(), q.stddev()),
    )
out["mb_fit"] = dict(
    mean=float(np.mean(means[-500:])), sd=float(np.mean(sds[-500:])),
    replicas=replicas_of(q),
)

# 7d. Checkpoints: 30 steps then 60 (mid-epoch) equal 60 at once.
runs = {}
for name, steps in (("resumed", (30, 60)), ("uninterrupted", (60,))):
    directory = tempfile.mkdtemp()
    for num_steps in steps:
        with strategy.scope():
            q = mu_surrogate()
            losses = mu_fit(
                q, keras.optimizers.Adam(0.05), num_steps,
                checkpoint_dir=directory, checkpoint_every=10,
            )
    runs[name] = dict(loss=np.asarray(losses).tolist(), replicas=replicas_of(q))
out["mb_checkpoints"] = runs

# 7e. A subsampled target: each replica draws its own 50 rows from its seed;
# the step is the mean of the replicas' losses recomputed on one device.
subsampled = tve.subsampled_target(mu_prior, mu_likelihood, X, 50)
with strategy.scope():
    loss, _ = tve.fit_surrogate_posterior(
        subsampled, mu_surrogate(), keras.optimizers.SGD(0.0), 1, sample_size=8,
        seed=SEED, progress=False, trace_fn=trace_loss_and_gradients,
    )
out["sub_step_loss"] = float(loss[0])
out["sub_replica_losses"] = [
    float(tve.monte_carlo_variational_loss(
        subsampled, mu_surrogate(), sample_size=4,
        seed=tf.random.experimental.stateless_fold_in(step_seed, r),
    ))
    for r in range(2)
]
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_replicas():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CI="true")
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    assert lines, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(lines[0][len("RESULT") :])


def _assert_replicas_equal(replicas):
    for components in replicas:
        for c in components[1:]:
            np.testing.assert_array_equal(c, components[0])


@pytest.mark.slow
def test_step_is_the_mean_of_the_replicas_which_draw_different_samples(two_replicas):
    assert two_replicas["replicas"] == 2
    np.testing.assert_allclose(
        two_replicas["step_loss"], np.mean(two_replicas["replica_losses"]), rtol=1e-6
    )
    first, second = two_replicas["replica_grads"]
    for got, g0, g1 in zip(two_replicas["step_grads"], first, second, strict=True):
        np.testing.assert_allclose(got, (np.array(g0) + g1) / 2, rtol=1e-5, atol=1e-6)
        assert not np.allclose(g0, g1)  # different draws on the two replicas
    assert two_replicas["replica_losses"][0] != two_replicas["replica_losses"][1]


@pytest.mark.slow
def test_mean_gradient_is_unbiased(two_replicas):
    # 400 step seeds at fixed parameters; each estimator's mean is within 4
    # standard errors (from the same draws) of the exact gradient of
    # KL(q || p), and the two estimators' means of each other.
    for distributed, single, exact in zip(
        two_replicas["distributed_grads"],
        two_replicas["single_grads"],
        two_replicas["exact_grads"],
        strict=True,
    ):
        distributed, single = np.array(distributed), np.array(single)
        se_d = distributed.std(axis=0, ddof=1) / np.sqrt(len(distributed))
        se_s = single.std(axis=0, ddof=1) / np.sqrt(len(single))
        assert np.all(np.abs(distributed.mean(0) - exact) < 4 * se_d + 1e-6)
        assert np.all(np.abs(single.mean(0) - exact) < 4 * se_s + 1e-6)
        difference = np.abs(distributed.mean(0) - single.mean(0))
        assert np.all(difference < 4 * np.sqrt(se_d**2 + se_s**2) + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_fit_reaches_the_target_with_equal_replicas(two_replicas, jit):
    run = two_replicas[f"adam_jit{jit}"]
    _assert_replicas_equal(run["replicas"])
    assert np.all(np.isfinite(run["loss"]))
    np.testing.assert_allclose(run["mean"], [1.0, 2.0, 3.0], atol=0.3)
    np.testing.assert_allclose(run["stddev"], [0.5, 1.0, 2.0], rtol=0.3)


@pytest.mark.slow
def test_resumed_fit_equals_uninterrupted(two_replicas):
    resumed = two_replicas["checkpoints"]["resumed"]
    uninterrupted = two_replicas["checkpoints"]["uninterrupted"]
    assert resumed["loss"] == uninterrupted["loss"]
    assert resumed["replicas"] == uninterrupted["replicas"]
    _assert_replicas_equal(resumed["replicas"])


@pytest.mark.slow
def test_non_finite_step_is_not_applied_on_any_replica(two_replicas):
    stop = two_replicas["non_finite"]
    assert stop is not None and stop["step"] >= 0
    assert f"step {stop['step']}" in stop["message"]
    _assert_replicas_equal(stop["replicas"])


@pytest.mark.slow
def test_clear_errors_under_two_replicas(two_replicas):
    assert "`sample_size=3`" in two_replicas["odd_sample_size"]
    assert "2 replicas" in two_replicas["odd_sample_size"]
    assert "batch size 3" in two_replicas["odd_batch"]
    assert "2 replicas" in two_replicas["odd_batch"]
    assert "eagerly" in two_replicas["in_function"]


@pytest.mark.slow
def test_minibatch_step_is_the_mean_of_the_replicas_halves(two_replicas):
    # Each replica reads its half of the global batch, scales it by N / 25 and
    # draws its own samples; the step reports the mean.
    np.testing.assert_allclose(
        two_replicas["mb_step_loss"],
        np.mean(two_replicas["mb_replica_losses"]),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        two_replicas["mb_step_grads"],
        np.mean(two_replicas["mb_replica_grads"], axis=0),
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.slow
def test_minibatch_gradient_under_two_replicas_is_unbiased(two_replicas):
    # 400 steps at fixed parameters (20 epochs of shuffled batches, a fresh
    # seed each step): within 4 standard errors, from the same draws, of the
    # gradient of KL(q || posterior), the full-data loss's up to a constant.
    grads = np.array(two_replicas["mb_grads"])
    exact = np.array(two_replicas["mb_exact_grads"])
    standard_error = grads.std(axis=0, ddof=1) / np.sqrt(len(grads))
    np.testing.assert_array_less(np.abs(grads.mean(axis=0) - exact), 4 * standard_error)
    # Sharp: a scale of N / 50 instead of N / 25 per replica halves the
    # likelihood's part of the gradient, far beyond this tolerance.
    np.testing.assert_array_less(4 * standard_error, 0.25 * np.abs(exact))


@pytest.mark.slow
def test_minibatch_fit_under_two_replicas_reaches_the_closed_form(two_replicas):
    mean, sd = two_replicas["posterior"]
    fit = two_replicas["mb_fit"]
    _assert_replicas_equal(fit["replicas"])
    # Polyak average of the last 500 iterates, as in tests/test_minibatch.py.
    np.testing.assert_allclose(fit["mean"], mean, atol=0.25 * sd)
    np.testing.assert_allclose(fit["sd"], sd, rtol=0.1)


@pytest.mark.slow
def test_resumed_minibatch_fit_under_two_replicas_equals_uninterrupted(two_replicas):
    resumed = two_replicas["mb_checkpoints"]["resumed"]
    uninterrupted = two_replicas["mb_checkpoints"]["uninterrupted"]
    assert resumed["loss"] == uninterrupted["loss"]
    assert resumed["replicas"] == uninterrupted["replicas"]


@pytest.mark.slow
def test_clipping_acts_on_the_mean_gradient(two_replicas):
    # The variables move by the mean gradient clipped to a global norm of
    # 0.01, as in one process; clipping each replica's share before summing
    # the shares would move them twice as far.
    clipped = two_replicas["clipped"]
    grads = [np.array(g) for g in clipped["after_grads"]]
    for g, same in zip(grads, clipped["before_grads"], strict=True):
        np.testing.assert_array_equal(g, same)  # same seed, same parameters
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    assert norm > 0.1  # the clip is active
    for before, after, g in zip(
        clipped["before"], clipped["after"], grads, strict=True
    ):
        np.testing.assert_allclose(
            np.array(before) - after, g * 0.01 / norm, rtol=1e-3, atol=1e-7
        )


@pytest.mark.slow
def test_subsampled_target_step_is_the_mean_of_the_replicas_own_batches(two_replicas):
    losses = two_replicas["sub_replica_losses"]
    assert abs(losses[0] - losses[1]) > 1.0  # different draws and batches
    np.testing.assert_allclose(
        two_replicas["sub_step_loss"], np.mean(losses), rtol=1e-5
    )
