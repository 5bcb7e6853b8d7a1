"""Keras `model.fit` under MultiWorkerMirroredStrategy, with real workers.

Each job is two worker processes of `examples/keras_multi_worker.py` on this
machine, each with its own `TF_CONFIG` (loopback ports), CPU only. The jobs:

- `uninterrupted`: a data-free fit of Bayesian logistic regression, 6 epochs;
- `killed` then `resumed`: the same fit in which worker 1 SIGKILLs itself
  when epoch 3 begins; the test then kills the chief (stuck in the next
  all-reduce, once its epoch-3 backup is written) and restarts the whole job
  on the same backup directory (`ChiefBackupAndRestore`, written by the chief
  only);
- `minibatch`: a minibatch fit whose dataset Keras shards across the workers;
- `plain_keras`: a plain Keras model fit on `(features, labels)` batches,
  which still fails (the Keras bug that `keras_models` works around by
  handing Keras each batch packed into one tensor).

All values are compared exactly: every worker applies the same all-reduced
gradient (a sum of two float32 values, the same in either order) to the same
variables, and a resumed job restores the variables, the optimizer state and
the seed generator's state, then runs the same float32 operations as the
uninterrupted job.
"""

import json
import os
import textwrap

import numpy as np
import pytest
from workers import finish, kill_chief_when, start_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "keras_multi_worker.py")
WORKERS = 2
EPOCHS = 6
KILL_AT_EPOCH = 3
TIMEOUT_S = 300

pytestmark = pytest.mark.slow

# A plain Keras fit under MultiWorkerMirroredStrategy on batches that are a
# structure. Keras 3's `fit` reduces a first batch with `strategy.reduce`
# (TensorFlowTrainer._maybe_symbolic_build), which takes one tensor, not a
# structure, once there are several workers.
PLAIN_KERAS_JOB = textwrap.dedent(
    """
    import json, os, sys
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import keras, numpy as np, tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    features = np.ones([16, 3], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((features, features[:, :1]))
    with strategy.scope():
        model = keras.Sequential([keras.Input([3]), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    try:
        model.fit(dataset.batch(4, drop_remainder=True), epochs=1, verbose=0)
        error = None
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    with open(sys.argv[1].format(index=strategy.cluster_resolver.task_id), "w") as f:
        json.dump({"error": error}, f)
    """
)


def _start_job(directory, name, *args):
    """Starts `WORKERS` worker processes; returns them and their output paths."""
    output = os.path.join(directory, name + "-{index}.json")
    command = ["--epochs", str(EPOCHS), "--output", output, *args]
    processes = start_job(SCRIPT, WORKERS, command)
    return processes, [output.format(index=i) for i in range(WORKERS)]


def _summaries(job):
    processes, outputs = job
    for code, stderr in finish(processes, TIMEOUT_S):
        assert code == 0, stderr
    return [json.load(open(path)) for path in outputs]


def _backed_up_epoch(backup_dir):
    try:
        with open(os.path.join(backup_dir, "training_metadata.json")) as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError):
        return -1


def _kill_chief_after_backup(job, backup_dir):
    """Waits for worker 1 to die, then for the backup, then kills the chief."""
    # The chief writes the backup before the epoch's first all-reduce, where
    # it then waits for the dead worker.
    return kill_chief_when(
        job[0],
        lambda: _backed_up_epoch(backup_dir) >= KILL_AT_EPOCH,
        settle_s=0.5,
        timeout_s=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("multi_worker"))
    backup_dir = os.path.join(directory, "backup")
    plain_keras_output = os.path.join(directory, "plain_keras-{index}.json")
    uninterrupted = _start_job(
        directory, "uninterrupted", "--backup-dir", os.path.join(directory, "b0")
    )
    killed = _start_job(
        directory,
        "killed",
        "--backup-dir",
        backup_dir,
        "--kill-at-epoch",
        str(KILL_AT_EPOCH),
    )
    minibatch = _start_job(
        directory,
        "minibatch",
        "--backup-dir",
        os.path.join(directory, "b1"),
        "--minibatch",
        "100",
    )
    plain_keras = start_job("-c", WORKERS, [PLAIN_KERAS_JOB, plain_keras_output])
    worker_exit = _kill_chief_after_backup(killed, backup_dir)
    backed_up_epoch = _backed_up_epoch(backup_dir)
    resumed = _start_job(directory, "resumed", "--backup-dir", backup_dir)
    return dict(
        uninterrupted=_summaries(uninterrupted),
        minibatch=_summaries(minibatch),
        plain_keras=_summaries(
            (plain_keras, [plain_keras_output.format(index=i) for i in range(WORKERS)])
        ),
        worker_exit=worker_exit,
        backed_up_epoch=backed_up_epoch,
        resumed=_summaries(resumed),
        backup_left=os.path.exists(backup_dir),
    )


def test_both_workers_finish_with_equal_variables(jobs):
    for job in ("uninterrupted", "minibatch"):
        chief, worker = jobs[job]
        assert chief["task_index"] == 0 and worker["task_index"] == 1
        assert chief["steps"] == worker["steps"] == EPOCHS * 20
        for a, b in zip(chief["variables"], worker["variables"], strict=True):
            np.testing.assert_array_equal(a, b)
        # Every worker logs the cross-worker mean of the epoch losses.
        assert chief["loss"] == worker["loss"]
        assert np.all(np.isfinite(chief["loss"]))
        assert chief["loss"][-1] < chief["loss"][0]


def test_killed_job_resumes_from_the_chiefs_backup_and_ends_where_uninterrupted(jobs):
    assert jobs["worker_exit"] == -9  # SIGKILL
    assert jobs["backed_up_epoch"] == KILL_AT_EPOCH
    expected = jobs["uninterrupted"][0]
    for summary in jobs["resumed"]:
        assert summary["initial_epoch"] == KILL_AT_EPOCH
        assert summary["steps"] == (EPOCHS - KILL_AT_EPOCH) * 20
        for got, want in zip(summary["variables"], expected["variables"], strict=True):
            np.testing.assert_array_equal(got, want)
        assert summary["loss"] == expected["loss"][KILL_AT_EPOCH:]
    # The chief deletes its backup when training ends.
    assert not jobs["backup_left"]


def test_keras_still_fails_to_fit_structured_batches_on_several_workers(jobs):
    # When this fails, Keras fits `(features, labels)` batches under a
    # multi-worker strategy: drop the packing of `keras_models`
    # (`SurrogatePosteriorModel._keras_input`, `_internal/packed_rows.py`) and this test.
    for summary in jobs["plain_keras"]:
        assert summary["error"] is not None, (
            "Keras now fits structured batches on several workers: remove the "
            "workaround in keras_models (SurrogatePosteriorModel._keras_input)."
        )
        assert "PerReplica" in summary["error"] and "to a Tensor" in summary["error"]
