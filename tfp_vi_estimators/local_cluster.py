"""A cluster of TensorFlow workers on this machine, for trying multi-worker code.

`tf.distribute.MultiWorkerMirroredStrategy` reads the cluster from the
`TF_CONFIG` environment variable of each worker process:

```none
TF_CONFIG = {"cluster": {"worker": ["host0:port0", "host1:port1", ...]},
             "task": {"type": "worker", "index": i}}
```

On a cluster each host sets its own. To run the same script as several
workers on one machine (a test, a laptop), this module picks free loopback
ports and starts one process per worker with its own `TF_CONFIG`, CPU only:

```python
from tfp_vi_estimators import local_cluster

processes = local_cluster.start_workers(["my_fit.py", "--num-steps", "100"], 2)
exit_codes = [p.wait() for p in processes]
```

Public API:

- `free_loopback_ports(count)`: `count` distinct free ports on `localhost`.
- `tf_configs(num_workers)`: one `TF_CONFIG` JSON string per worker of a
  loopback cluster.
- `start_workers(argv, num_workers, env=None, **popen_kwargs)`: starts
  `python *argv` once per worker; returns the `subprocess.Popen`s.

A port is free when it is picked and taken by the worker when its strategy
starts; another program could take it in between (rare on a test machine).
"""

import json
import numbers
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["free_loopback_ports", "start_workers", "tf_configs"]


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct ports on `localhost` that are free now.

    Raises:
      TypeError: for a `count` that is not an int.
      ValueError: for a `count` below 1.
    """
    _check_positive_int("count", count)
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:  # all bound at once, so the ports are distinct
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(num_workers: int) -> list[str]:
    """The `TF_CONFIG` of each worker of a cluster on loopback ports.

    Returns:
      `num_workers` JSON strings naming the same cluster, worker `i`'s with
      `"task": {"type": "worker", "index": i}`; worker 0 is the chief.

    Raises:
      TypeError: for a `num_workers` that is not an int.
      ValueError: for a `num_workers` below 1.
    """
    _check_positive_int("num_workers", num_workers)
    ports = free_loopback_ports(num_workers)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        for index in range(num_workers)
    ]


def start_workers(
    argv: Sequence[str],
    num_workers: int,
    env: Mapping[str, str] | None = None,
    **popen_kwargs,
) -> list[subprocess.Popen]:
    """Starts `python *argv` as each worker of a loopback cluster, CPU only.

    Args:
      argv: non-empty list or tuple of strings (or paths): the script and its
        arguments, run with this interpreter. Not modified.
      num_workers: positive int, the number of worker processes.
      env: the environment of every worker, a mapping of strings to strings
        (default: this process's); each gets its own `TF_CONFIG` and
        `CUDA_VISIBLE_DEVICES=-1` on top. Not modified.
      **popen_kwargs: passed to `subprocess.Popen` (`stdout`, `stderr`, ...),
        except `args` and `executable`, which this function sets.

    Returns:
      The `subprocess.Popen` of each worker, worker 0 (the chief) first. If a
      worker fails to start, those already started are killed and the error
      is raised.

    Raises:
      TypeError: for an `argv` that is not a list or tuple of strings or
        paths, an `env` that is not a mapping of strings, a `num_workers`
        that is not an int, or a keyword this function sets itself.
      ValueError: for an empty `argv` (an interactive interpreter per
        worker) or a `num_workers` below 1; all before any process starts.
    """
    _check_argv(argv)
    _check_env(env)
    _check_positive_int("num_workers", num_workers)
    reserved = sorted({"args", "executable"} & set(popen_kwargs))
    if reserved:
        raise TypeError(
            f"`start_workers` sets {reserved} itself (the interpreter and `argv`)."
        )
    base = dict(os.environ if env is None else env)
    processes = []
    try:
        for config in tf_configs(num_workers):
            processes.append(
                subprocess.Popen(
                    [sys.executable, *argv],
                    env=dict(base, TF_CONFIG=config, CUDA_VISIBLE_DEVICES="-1"),
                    **popen_kwargs,
                )
            )
    except BaseException:
        for process in processes:  # no orphaned half cluster
            process.kill()
            process.wait()
        raise
    return processes


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be a positive int; got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")


def _check_argv(argv):
    if not isinstance(argv, list | tuple):
        raise TypeError(
            "`argv` must be a list or tuple of arguments, e.g. [script, ...]; got "
            f"{argv!r}."
        )
    if not argv:
        raise ValueError(
            "`argv` must name a script or `-c` code; an empty `argv` would start "
            "an interactive interpreter per worker."
        )
    for argument in argv:
        if not isinstance(argument, str | os.PathLike):
            raise TypeError(
                f"`argv` must hold strings or paths; got {argument!r} of type "
                f"{type(argument).__name__}."
            )


def _check_env(env):
    if env is None:
        return
    if not isinstance(env, Mapping):
        raise TypeError(
            f"`env` must be None or a mapping of strings; got {type(env).__name__}."
        )
    for key, value in env.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise TypeError(
                f"`env` must map strings to strings; got {key!r}: {value!r}."
            )
