"""`local_cluster`: loopback ports, TF_CONFIG and worker processes."""

import json
import socket
import subprocess

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


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_bad_counts_are_clear_errors(count):
    with pytest.raises(ValueError, match="positive int"):
        local_cluster.free_loopback_ports(count)
    with pytest.raises(ValueError, match="`num_workers`"):
        local_cluster.tf_configs(count)


def test_a_string_argv_is_a_clear_error():
    with pytest.raises(TypeError, match="`argv` must be a sequence"):
        local_cluster.start_workers("script.py --flag", 2)
