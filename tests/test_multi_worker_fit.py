"""`fit_surrogate_posterior` under MultiWorkerMirroredStrategy, with real workers.

Each job is two worker processes of `examples/multi_worker_fit.py` on this
machine, each with its own `TF_CONFIG` (loopback ports), CPU only
(`tests/workers.py`). The jobs, run on checkpoints every 20 steps:

- `uninterrupted`: 60 steps;
- `killed` then `resumed`: the same fit in which worker 1 SIGKILLs itself after
  40 steps (its share of the job's step-40 checkpoint done); the test then
  kills the chief, stuck in the next all-reduce once it has written the
  step-40 checkpoint, and restarts the whole job on the same directory.

Each job runs twice: on the full data, and on global minibatches of 40 of the
500 rows (`MinibatchTarget`), each worker reading its 20-row shard of every
global batch; the restarted job skips the 40 global batches already read
(mid-epoch).

All values are compared exactly: every worker applies the same all-reduced
gradient to the same variables, and a resumed job restores the variables,
the optimizer state, the seed state and the trace, then runs the same float32
operations as the uninterrupted job.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import workers

pytestmark = pytest.mark.slow

SCRIPT = os.path.join(workers.REPO, "examples", "multi_worker_fit.py")
NUM_WORKERS = 2
NUM_STEPS = 60
EVERY = 20
KILL_AFTER = 40


BATCH_SIZE = {"full": 0, "minibatch": 40}  # 40 of 500 rows: mid-epoch at 40 steps


def _job(directory, name, *extra):
    output = os.path.join(directory, name + "-{index}.json")
    args = [
        "--num-steps",
        str(NUM_STEPS),
        "--checkpoint-every",
        str(EVERY),
        "--rows",
        "500",
        "--output",
        output,
        *extra,
    ]
    return workers.start_job(SCRIPT, NUM_WORKERS, args), output


def _summaries(job):
    processes, output = job
    for code, stderr in workers.finish(processes):
        assert code == 0, stderr
    return workers.read_outputs(output, NUM_WORKERS)


def _latest_step(checkpoint_dir):
    """The step of the chief's latest complete checkpoint, or -1."""
    try:
        with open(os.path.join(checkpoint_dir, "checkpoint")) as f:
            match = re.search(r'^model_checkpoint_path: "fit-(\d+)"', f.read(), re.M)
    except OSError:
        return -1
    return int(match.group(1)) if match else -1


def _kill_chief_after_checkpoint(job, checkpoint_dir):
    """Waits for worker 1 to die and the chief's checkpoint; kills the chief."""
    return workers.kill_chief_when(
        job[0], lambda: _latest_step(checkpoint_dir) >= KILL_AFTER
    )


@pytest.fixture(scope="module", params=sorted(BATCH_SIZE))
def jobs(request, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("multi_worker_fit"))
    killed_dir = os.path.join(directory, "killed")
    data = ("--batch-size", str(BATCH_SIZE[request.param]))
    uninterrupted = _job(
        directory,
        "uninterrupted",
        "--checkpoint-dir",
        os.path.join(directory, "u"),
        *data,
    )
    killed = _job(
        directory,
        "killed",
        "--checkpoint-dir",
        killed_dir,
        "--kill-after-steps",
        str(KILL_AFTER),
        *data,
    )
    worker_exit = _kill_chief_after_checkpoint(killed, killed_dir)
    checkpointed_step = _latest_step(killed_dir)
    resumed = _job(directory, "resumed", "--checkpoint-dir", killed_dir, *data)
    return dict(
        data=request.param,
        uninterrupted=_summaries(uninterrupted),
        worker_exit=worker_exit,
        checkpointed_step=checkpointed_step,
        resumed=_summaries(resumed),
        worker_dirs=[n for n in os.listdir(killed_dir) if n.startswith(".worker")],
    )


def test_both_workers_finish_with_equal_variables_and_traces(jobs):
    chief, worker = jobs["uninterrupted"]
    assert chief["task_index"] == 0 and worker["task_index"] == 1
    assert chief["replicas"] == worker["replicas"] == NUM_WORKERS
    assert len(chief["loss"]) == NUM_STEPS
    assert chief["loss"] == worker["loss"]
    for a, b in zip(chief["variables"], worker["variables"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(chief["loss"]))
    assert np.mean(chief["loss"][-10:]) < np.mean(chief["loss"][:10])


def test_killed_job_resumes_from_the_last_checkpoint_and_ends_where_uninterrupted(
    jobs,
):
    assert jobs["worker_exit"] == -9  # SIGKILL
    assert jobs["checkpointed_step"] == KILL_AFTER
    expected = jobs["uninterrupted"][0]
    for summary in jobs["resumed"]:
        assert summary["loss"] == expected["loss"]
        for got, want in zip(summary["variables"], expected["variables"], strict=True):
            np.testing.assert_array_equal(got, want)
    # Only the chief's checkpoints are kept.
    assert jobs["worker_dirs"] == []


# Recomputes, on one device, what worker r computes at step 0 of the
# minibatch job: rows [20 r, 20 r + 20) of the first global batch, scaled by
# 500 / 20, with 4 draws seeded by fold_in(step seed, r). It runs in a fresh
# interpreter, as the workers do: the seeded shuffle's order depends on TF's
# global seed, which other tests in this process may have set.
_SHARD_LOSSES = r"""
import importlib.util, json, sys
import tensorflow as tf
import tensorflow_probability as tfp
import tfp_vi_estimators as tve

spec = importlib.util.spec_from_file_location("multi_worker_fit", sys.argv[1])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
target = example.minibatched_logistic_regression(500, 20, int(sys.argv[2]))
x, y = next(iter(target.dataset))
step_seed = tfp.random.split_seed(tfp.random.sanitize_seed((1, 2), salt="minimize"), 2)[0]
share = int(sys.argv[2]) // 2
losses = [
    float(tve.monte_carlo_variational_loss(
        lambda w, part=(x[share * r : share * (r + 1)], y[share * r : share * (r + 1)]): (
            example.prior_log_prob(w)
            + 500 / share * tf.reduce_sum(example.log_likelihood(part, w), -1)
        ),
        example.surrogate(20),
        sample_size=4,
        seed=tf.random.experimental.stateless_fold_in(step_seed, r),
    ))
    for r in range(2)
]
print("LOSSES" + json.dumps(losses))
"""


@pytest.mark.parametrize("jobs", ["minibatch"], indirect=True)
def test_minibatch_step_is_the_mean_of_the_workers_shards(jobs):
    # Each worker reads its own 20-row shard of the 40-row global batch: the
    # step-0 loss both workers report is the mean of the two shards' losses.
    result = subprocess.run(
        [sys.executable, "-c", _SHARD_LOSSES, SCRIPT, str(BATCH_SIZE["minibatch"])],
        env=dict(os.environ, PYTHONPATH=workers.REPO, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=workers.TIMEOUT_S,
    )
    lines = [x for x in result.stdout.splitlines() if x.startswith("LOSSES")]
    assert lines, result.stderr[-3000:]
    losses = json.loads(lines[0][len("LOSSES") :])
    for summary in jobs["uninterrupted"]:
        np.testing.assert_allclose(summary["loss"][0], np.mean(losses), rtol=1e-5)
    assert abs(losses[0] - losses[1]) > 1.0  # different shards
