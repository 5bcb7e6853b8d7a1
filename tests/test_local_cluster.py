"""`local_cluster`: loopback ports, TF_CONFIG and worker processes."""

import json
import os
import socket
import subprocess

import numpy as np
import pytest

from tfp_vi_estimators import local_cluster


def test_ports_are_distinct_and_can_be_bound():
    ports = local_cluster.free_loopback_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind(("localhost", port))


def test_tf_configs_name_one_cluster_and_each_worker_once():
    configs = [json.loads(c) for c in local_cluster.tf_configs(3)]
    cluster = configs[0]["cluster"]
    assert len(cluster["worker"]) == 3
    assert all(w.startswith("localhost:") for w in cluster["worker"])
    assert all(c["cluster"] == cluster for c in configs)
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": i} for i in range(3)
    ]


def test_workers_get_their_own_tf_config_cpu_only_and_the_given_environment():
    script = (
        "import json, os; print(json.dumps([os.environ['TF_CONFIG'], "
        "os.environ['CUDA_VISIBLE_DEVICES'], os.environ['MARK']]))"
    )
    processes = local_cluster.start_workers(
        ["-c", script],
        2,
        env={"MARK": "kept", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    tasks = [json.loads(config)["task"]["index"] for config, _, _ in outputs]
    assert tasks == [0, 1]
    assert {cuda for _, cuda, _ in outputs} == {"-1"}
    assert {mark for _, _, mark in outputs} == {"kept"}


@pytest.mark.parametrize(
    "count, error",
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        (True, TypeError),
        ("2", TypeError),
        (None, TypeError),
    ],
)
def test_bad_counts_are_clear_errors(count, error):
    with pytest.raises(error, match="`count` must be a positive int"):
        local_cluster.free_loopback_ports(count)
    with pytest.raises(error, match="`num_workers` must be a positive int"):
        local_cluster.tf_configs(count)
    with pytest.raises(error, match="`num_workers` must be a positive int"):
        local_cluster.start_workers(["-c", "pass"], count)


def test_numpy_counts_are_accepted():
    assert len(local_cluster.tf_configs(np.int64(2))) == 2


@pytest.mark.parametrize(
    "arguments, error, match",
    [
        (dict(argv="script.py --flag"), TypeError, "`argv` must be a list or tuple"),
        (dict(argv=b"script.py"), TypeError, "`argv` must be a list or tuple"),
        (dict(argv=None), TypeError, "`argv` must be a list or tuple"),
        (dict(argv=iter(["-c", "pass"])), TypeError, "`argv` must be a list or"),
        (dict(argv=[]), ValueError, "`argv` must name a script"),
        (dict(argv=["-c", 3]), TypeError, "`argv` must hold strings or paths"),
        (dict(env=["PATH=/bin"]), TypeError, "`env` must be None or a mapping"),
        (dict(env={"PATH": 1}), TypeError, "`env` must map strings to strings"),
        (dict(env={1: "x"}), TypeError, "`env` must map strings to strings"),
        (dict(extra={"args": ["x"]}), TypeError, "sets \\['args'\\] itself"),
        (dict(extra={"executable": "sh"}), TypeError, "sets \\['executable'\\]"),
    ],
)
def test_bad_arguments_fail_before_any_worker_starts(arguments, error, match):
    arguments = {"argv": ["-c", "pass"], "num_workers": 2, **arguments}
    extra = arguments.pop("extra", {})
    env = arguments.get("env")
    given = dict(env) if isinstance(env, dict) else None
    with pytest.raises(error, match=match):
        local_cluster.start_workers(**arguments, **extra)
    if given is not None:
        assert env == given


def test_the_given_argv_and_env_are_not_modified():
    argv, env = ["-c", "pass"], {"MARK": "kept", "PATH": "/usr/bin:/bin"}
    given_argv, given_env = list(argv), dict(env)
    processes = local_cluster.start_workers(argv, 2, env=env)
    assert [p.wait(timeout=60) for p in processes] == [0, 0]
    assert argv == given_argv and env == given_env


def test_a_worker_that_fails_to_start_takes_the_started_ones_down(monkeypatch):
    # The second worker's stdout cannot be opened: the first, already
    # running, is killed rather than left waiting for a cluster forever.
    started = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    class BreaksSecondTime:
        calls = 0

        def fileno(self):
            self.calls += 1
            if self.calls > 1:
                raise OSError("no second stdout")
            return devnull.fileno()

    monkeypatch.setattr(local_cluster.subprocess, "Popen", RecordingPopen)
    with open(os.devnull, "w") as devnull:
        with pytest.raises(OSError, match="no second stdout"):
            local_cluster.start_workers(
                ["-c", "import time; time.sleep(120)"], 2, stdout=BreaksSecondTime()
            )
    assert len(started) == 1 and started[0].returncode is not None
