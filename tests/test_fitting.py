"""fit_surrogate_posterior: tfp.vi's traces, estimators, checkpoints, failures."""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve
from tfp_vi_estimators.fitting import (
    CorruptCheckpointError,
    NonFiniteLossError,
    fit_surrogate_posterior,
)

tfd = tfp.distributions
tfb = tfp.bijectors
GE = tve.GradientEstimators
SEED = (17, 42)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _surrogate():
    loc = tf.Variable([0.3, -0.2, 0.1], name="loc")
    scale = tfp.util.TransformedVariable([1.0, 0.5, 2.0], tfb.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale)


_TARGET = tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0]).log_prob


@pytest.mark.parametrize("jit_compile", [None, True])
def test_same_loss_trace_as_tfp_vi(jit_compile):
    q_tfp = _surrogate()
    expected = tfp.vi.fit_surrogate_posterior(
        _TARGET,
        q_tfp,
        tf_keras.optimizers.Adam(0.1),
        30,
        sample_size=2,
        jit_compile=jit_compile,
        seed=SEED,
    )
    q = _surrogate()
    got = fit_surrogate_posterior(
        _TARGET,
        q,
        tf_keras.optimizers.Adam(0.1),
        30,
        sample_size=2,
        jit_compile=jit_compile,
        seed=SEED,
        progress=False,
    )
    # Same ops on the same device: the traces agree to the last bit.
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(q.mean(), q_tfp.mean())


def test_same_trace_with_convergence_criterion_and_trace_fn():
    criterion = tfp.optimizer.convergence_criteria.LossNotDecreasing(
        atol=0.01, window_size=5, min_num_steps=10
    )

    def trace_fn(tq):
        return tq.loss, tq.parameters, tq.has_converged, tq.step

    kwargs = dict(convergence_criterion=criterion, trace_fn=trace_fn, seed=SEED)
    expected = tfp.vi.fit_surrogate_posterior(
        _TARGET, _surrogate(), keras.optimizers.Adam(0.1), 200, **kwargs
    )
    got = fit_surrogate_posterior(
        _TARGET, _surrogate(), keras.optimizers.Adam(0.1), 200, progress=False, **kwargs
    )
    assert int(expected[3][-1]) < 199  # it did converge early
    for g, e in zip(tf.nest.flatten(got), tf.nest.flatten(expected), strict=True):
        np.testing.assert_array_equal(g, e)


def test_doubly_reparameterized_reaches_the_target_in_10d():
    # Sticking the landing: at q = p the DR gradient is exactly zero, so SGD
    # converges to the target instead of jittering at the Monte Carlo noise
    # floor (KL ~ 1e-6 after 400 steps here; REPARAMETERIZATION stays near 1).
    dims = 10
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dims, dims)).astype(np.float32) / np.sqrt(dims)
    target = tfd.MultivariateNormalTriL(
        loc=rng.normal(size=dims).astype(np.float32),
        scale_tril=np.linalg.cholesky(a @ a.T + 0.5 * np.eye(dims)).astype(np.float32),
    )
    q = tfd.MultivariateNormalTriL(
        loc=tf.Variable(tf.zeros(dims)),
        scale_tril=tfp.util.TransformedVariable(
            tf.eye(dims), tfb.FillScaleTriL(diag_shift=1e-5)
        ),
    )
    fit_surrogate_posterior(
        target.log_prob,
        q,
        keras.optimizers.SGD(0.05),
        500,
        jit_compile=True,
        seed=SEED,
        gradient_estimator=GE.DOUBLY_REPARAMETERIZED,
        progress=False,
    )
    kl = float(tfd.kl_divergence(q, target))
    assert kl < 1e-3, kl


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_finite_values():
    def make():
        v = tf.Variable(0.0, name="v")
        return v, tfd.Normal(v, 1.0)

    def target(z):
        # Finite until the surrogate's mean passes 1, then NaN.
        return tfd.Normal(3.0, 1.0).log_prob(z) + tf.where(loc_var() > 1.0, np.nan, 0.0)

    v, q = make()
    loc_var = lambda: v  # noqa: E731
    with pytest.raises(NonFiniteLossError, match=r"at step (\d+)") as info:
        fit_surrogate_posterior(
            target, q, keras.optimizers.SGD(0.1), 100, seed=SEED, progress=False
        )
    step = info.value.step
    assert 0 < step < 100
    assert f"step {step}" in str(info.value) and "the loss" in str(info.value)
    failed_value = v.numpy()
    assert np.isfinite(failed_value) and failed_value > 1.0

    v, q = make()
    loc_var = lambda: v  # noqa: E731
    fit_surrogate_posterior(
        target, q, keras.optimizers.SGD(0.1), step, seed=SEED, progress=False
    )
    assert v.numpy() == failed_value


def test_progress_line_and_ci_default(capsys, monkeypatch):
    fit_surrogate_posterior(
        _TARGET, _surrogate(), keras.optimizers.Adam(0.1), 20, seed=SEED, progress=True
    )
    err = capsys.readouterr().err
    assert "step 20/20" in err and "loss" in err and "steps/s" in err
    monkeypatch.setenv("CI", "true")
    fit_surrogate_posterior(
        _TARGET, _surrogate(), keras.optimizers.Adam(0.1), 5, seed=SEED
    )
    assert capsys.readouterr().err == ""


def test_inside_tf_function_matches_tfp():
    def fit_in_function(fit):
        q = _surrogate()
        optimizer = keras.optimizers.SGD(0.1)
        run = tf.function(
            lambda: fit(_TARGET, q, optimizer, 10, seed=SEED), autograph=False
        )
        return run()

    np.testing.assert_allclose(
        fit_in_function(fit_surrogate_posterior),
        fit_in_function(tfp.vi.fit_surrogate_posterior),
        rtol=1e-6,
    )


# Checkpoints.

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp
    from tfp_vi_estimators.fitting import fit_surrogate_posterior

    tfd = tfp.distributions
    mode, checkpoint_dir, out = sys.argv[1:4]
    kill_after = 40

    def target(z):
        return tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0]).log_prob(z)

    def fit(checkpoint_dir):
        loc = tf.Variable([0.3, -0.2, 0.1])
        scale = tfp.util.TransformedVariable([1.0, 0.5, 2.0], tfp.bijectors.Softplus())
        q = tfd.MultivariateNormalDiag(loc, scale)
        trace = fit_surrogate_posterior(
            target, q, keras.optimizers.Adam(0.05), 100, sample_size=2,
            seed=(3, 4), progress=False, checkpoint_dir=checkpoint_dir,
            checkpoint_every=20 if checkpoint_dir else None,
        )
        return np.asarray(trace), loc.numpy(), scale.numpy()

    if mode == "kill":
        save = tf.train.CheckpointManager.save

        def save_then_die(self, checkpoint_number=None, **kwargs):
            path = save(self, checkpoint_number=checkpoint_number, **kwargs)
            if checkpoint_number >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return path

        tf.train.CheckpointManager.save = save_then_die
        fit(checkpoint_dir)
    else:
        resumed = fit(checkpoint_dir)
        uninterrupted = fit(None)
        np.savez(out, *resumed, *uninterrupted)
    """
)


def _run_child(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CI="true")
    return subprocess.run(
        [
            sys.executable,
            str(script),
            mode,
            str(tmp_path / "ckpt"),
            str(tmp_path / "out.npz"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    killed = _run_child(tmp_path, "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("fit-40")

    resumed = _run_child(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = np.load(tmp_path / "out.npz")
    trace, loc, scale, trace_0, loc_0, scale_0 = (results[f"arr_{i}"] for i in range(6))
    assert trace.shape == (100,)
    np.testing.assert_array_equal(trace, trace_0)
    np.testing.assert_array_equal(loc, loc_0)
    np.testing.assert_array_equal(scale, scale_0)


def _checkpointed_fit(directory, **kwargs):
    kwargs = dict(dict(num_steps=10, seed=SEED, progress=False), **kwargs)
    return fit_surrogate_posterior(
        _TARGET,
        _surrogate(),
        keras.optimizers.Adam(0.1),
        checkpoint_dir=str(directory),
        checkpoint_every=5,
        **kwargs,
    )


def test_finished_fit_is_restored_and_can_be_extended(tmp_path):
    first = _checkpointed_fit(tmp_path)
    again = _checkpointed_fit(tmp_path)
    np.testing.assert_array_equal(first, again)
    longer = _checkpointed_fit(tmp_path, num_steps=15)
    uninterrupted = fit_surrogate_posterior(
        _TARGET, _surrogate(), keras.optimizers.Adam(0.1), 15, seed=SEED, progress=False
    )
    np.testing.assert_array_equal(longer, uninterrupted)


def test_checkpoint_from_different_arguments_is_refused(tmp_path):
    _checkpointed_fit(tmp_path)
    with pytest.raises(
        ValueError, match=r"different arguments: `sample_size` was 1, now 3"
    ):
        _checkpointed_fit(tmp_path, sample_size=3)
    with pytest.raises(ValueError, match=r"`seed` was \[17, 42\], now \[1, 2\]"):
        _checkpointed_fit(tmp_path, seed=(1, 2))
    with pytest.raises(ValueError, match="beyond `num_steps=5`"):
        _checkpointed_fit(tmp_path, num_steps=5)


def test_corrupt_checkpoint_is_reported_not_loaded(tmp_path):
    _checkpointed_fit(tmp_path)
    (data,) = tmp_path.glob("fit-10.data-*")
    data.write_bytes(b"\0garbage" * (data.stat().st_size // 8 + 1))
    q = _surrogate()
    before = q.mean().numpy()
    with pytest.raises(CorruptCheckpointError, match="fit-10.*corrupt"):
        fit_surrogate_posterior(
            _TARGET,
            q,
            keras.optimizers.Adam(0.1),
            10,
            seed=SEED,
            progress=False,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=5,
        )
    np.testing.assert_array_equal(q.mean(), before)


# Argument checks.

_GOOD = dict(
    target_log_prob_fn=_TARGET,
    optimizer=keras.optimizers.Adam(0.1),
    num_steps=5,
)


@pytest.mark.parametrize(
    "override, error, argument",
    [
        (dict(target_log_prob_fn=3.0), TypeError, "target_log_prob_fn"),
        (dict(surrogate_posterior="q"), TypeError, "surrogate_posterior"),
        (dict(optimizer="adam"), TypeError, "optimizer"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(num_steps=2.5), TypeError, "num_steps"),
        (dict(convergence_criterion=object()), TypeError, "convergence_criterion"),
        (dict(trace_fn=1), TypeError, "trace_fn"),
        (dict(sample_size=-1), ValueError, "sample_size"),
        (dict(importance_sample_size=True), TypeError, "importance_sample_size"),
        (dict(trainable_variables=[1.0]), TypeError, "trainable_variables"),
        (dict(jit_compile="yes"), TypeError, "jit_compile"),
        (dict(seed="s"), TypeError, "seed"),
        (dict(name=3), TypeError, "name"),
        (dict(gradient_estimator="dr"), TypeError, "gradient_estimator"),
        (dict(gradient_estimator=GE.VIMCO), ValueError, "importance_sample_size"),
        (dict(progress="on"), TypeError, "progress"),
        (dict(checkpoint_dir=3), TypeError, "checkpoint_dir"),
        (dict(checkpoint_every=5), ValueError, "checkpoint_every"),
        (
            dict(checkpoint_dir="/tmp/x", checkpoint_every=0),
            ValueError,
            "checkpoint_every",
        ),
    ],
)
@mode_parameter
def test_bad_arguments_name_the_argument(override, error, argument, mode):
    q = _surrogate()
    kwargs = dict(_GOOD, surrogate_posterior=q)
    kwargs.update(override)
    assert_raises(mode, lambda: fit_surrogate_posterior(**kwargs), error, argument)
    np.testing.assert_array_equal(q.mean(), np.float32([0.3, -0.2, 0.1]))
