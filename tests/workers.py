"""A small launcher of real TensorFlow worker processes on this machine.

`start_job` runs one copy of a script per worker, each with its own
`TF_CONFIG` naming a cluster of free loopback ports, CPU only
(`tfp_vi_estimators.local_cluster`); `finish` waits
for them with a timeout and returns their exit codes and the tails of their
standard error. Tests of `MultiWorkerMirroredStrategy` use it: every worker is
a separate process, as on separate machines.
"""

import json
import os
import subprocess
import time

from tfp_vi_estimators import local_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300


def start_job(script, num_workers, args=()):
    """Starts `num_workers` processes of `script`; returns the `Popen`s."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return local_cluster.start_workers(
        [script, *args],
        num_workers,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes, timeout_s=TIMEOUT_S):
    """Waits for the processes (killing any past the timeout).

    Returns:
      A list of `(exit_code, stderr_tail)`, one per process.
    """
    deadline = time.monotonic() + timeout_s
    results = []
    for p in processes:
        try:
            _, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, stderr = p.communicate()
        results.append((p.returncode, stderr[-3000:]))
    return results


def kill_chief_when(processes, reached, settle_s=0.0, timeout_s=TIMEOUT_S):
    """The kill in a kill-and-restart test, once a dying worker has died.

    Waits for worker 1 (which kills itself mid-job) to exit, then until
    `reached()` (the chief's checkpoint of the step or epoch the test kills
    at) or the chief's own exit, waits `settle_s` more and kills the chief,
    which would otherwise wait for the dead worker in its next all-reduce.

    Returns:
      Worker 1's exit code.
    """
    chief, worker = processes
    worker.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while not reached() and chief.poll() is None:
        assert time.monotonic() < deadline, "the chief never reached the kill point"
        time.sleep(0.1)
    time.sleep(settle_s)
    chief.kill()
    chief.communicate()
    return worker.returncode


def read_outputs(pattern, num_workers):
    """The JSON each worker wrote to `pattern.format(index=i)`."""
    outputs = []
    for index in range(num_workers):
        with open(pattern.format(index=index)) as f:
            outputs.append(json.load(f))
    return outputs
