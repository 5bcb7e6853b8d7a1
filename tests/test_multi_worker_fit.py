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

import importlib.util
import os
import re

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


@pytest.mark.parametrize("jobs", ["minibatch"], indirect=True)
def test_minibatch_step_is_the_mean_of_the_workers_shards(jobs):
    # Worker r reads rows [20 r, 20 r + 20) of the first global batch, scales
    # them by 500 / 20 and draws 4 samples with fold_in(step seed, r): the
    # step-0 loss both workers report is the mean of the two, recomputed here
    # on one device.
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfp_vi_estimators as tve

    example = _example()
    target = example.minibatched_logistic_regression(500, 20, BATCH_SIZE["minibatch"])
    x, y = next(iter(target.dataset))
    step_seed = tfp.random.split_seed(
        tfp.random.sanitize_seed((1, 2), salt="minimize"), 2
    )[0]
    losses = []
    for r in range(NUM_WORKERS):
        share = (x[20 * r : 20 * r + 20], y[20 * r : 20 * r + 20])
        losses.append(
            tve.monte_carlo_variational_loss(
                lambda w, share=share: (
                    example.prior_log_prob(w)
                    + 25.0 * tf.reduce_sum(example.log_likelihood(share, w), -1)
                ),
                example.surrogate(20),
                sample_size=4,
                seed=tf.random.experimental.stateless_fold_in(step_seed, r),
            )
        )
    for summary in jobs["uninterrupted"]:
        np.testing.assert_allclose(summary["loss"][0], np.mean(losses), rtol=1e-5)
    assert abs(float(losses[0]) - float(losses[1])) > 1.0  # different shards


def _example():
    spec = importlib.util.spec_from_file_location("multi_worker_fit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
