"""A small launcher of real TensorFlow worker processes on this machine.

`start_job` runs one copy of a script per worker, each with its own
`TF_CONFIG` naming a cluster of free loopback ports, CPU only; `finish` waits
for them with a timeout and returns their exit codes and the tails of their
standard error. Tests of `MultiWorkerMirroredStrategy` use it: every worker is
a separate process, as on separate machines.
"""

import json
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300


def free_ports(count):
    """`count` distinct free loopback ports."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_env(cluster, index):
    """The environment of worker `index`: its `TF_CONFIG`, CPU only, the repo."""
    config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    return dict(
        os.environ,
        TF_CONFIG=json.dumps(config),
        CUDA_VISIBLE_DEVICES="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=REPO,
    )


def start_job(script, num_workers, args=()):
    """Starts `num_workers` processes of `script`; returns the `Popen`s."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(num_workers)]}
    return [
        subprocess.Popen(
            [sys.executable, script, *args],
            env=worker_env(cluster, index),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(num_workers)
    ]


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


def read_outputs(pattern, num_workers):
    """The JSON each worker wrote to `pattern.format(index=i)`."""
    outputs = []
    for index in range(num_workers):
        with open(pattern.format(index=index)) as f:
            outputs.append(json.load(f))
    return outputs
