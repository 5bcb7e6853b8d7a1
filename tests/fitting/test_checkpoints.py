"""Checkpoints: a killed fit resumes exactly; others' checkpoints are refused."""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_vi_estimators.fitting import CorruptCheckpointError, fit_surrogate_posterior

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


@pytest.mark.slow  # a subprocess killed and restarted
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


def _checkpointed_fit(problem, directory, **kwargs):
    kwargs = dict(dict(num_steps=10, seed=problem.seed, progress=False), **kwargs)
    return fit_surrogate_posterior(
        problem.target,
        problem.surrogate(),
        keras.optimizers.Adam(0.1),
        checkpoint_dir=str(directory),
        checkpoint_every=5,
        **kwargs,
    )


def test_finished_fit_is_restored_and_can_be_extended(tmp_path, problem):
    first = _checkpointed_fit(problem, tmp_path)
    again = _checkpointed_fit(problem, tmp_path)
    np.testing.assert_array_equal(first, again)
    longer = _checkpointed_fit(problem, tmp_path, num_steps=15)
    uninterrupted = fit_surrogate_posterior(
        problem.target,
        problem.surrogate(),
        keras.optimizers.Adam(0.1),
        15,
        seed=problem.seed,
        progress=False,
    )
    np.testing.assert_array_equal(longer, uninterrupted)


def test_checkpoint_from_different_arguments_is_refused(tmp_path, problem):
    _checkpointed_fit(problem, tmp_path)
    with pytest.raises(
        ValueError, match=r"different arguments: `sample_size` was 1, now 3"
    ):
        _checkpointed_fit(problem, tmp_path, sample_size=3)
    with pytest.raises(ValueError, match=r"`seed` was \[17, 42\], now \[1, 2\]"):
        _checkpointed_fit(problem, tmp_path, seed=(1, 2))
    with pytest.raises(ValueError, match="beyond `num_steps=5`"):
        _checkpointed_fit(problem, tmp_path, num_steps=5)


def test_corrupt_checkpoint_is_reported_not_loaded(tmp_path, problem):
    _checkpointed_fit(problem, tmp_path)
    (data,) = tmp_path.glob("fit-10.data-*")
    data.write_bytes(b"\0garbage" * (data.stat().st_size // 8 + 1))
    q = problem.surrogate()
    before = q.mean().numpy()
    with pytest.raises(CorruptCheckpointError, match="fit-10.*corrupt"):
        fit_surrogate_posterior(
            problem.target,
            q,
            keras.optimizers.Adam(0.1),
            10,
            seed=problem.seed,
            progress=False,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=5,
        )
    np.testing.assert_array_equal(q.mean(), before)
