"""benchmarks/gpu_check.py: its CPU preset end to end, and its reading of the log.

The slow test runs the script as CI does (`--preset cpu`, a subprocess) and
checks that the one table has every planned row, each with finite numbers,
placement counts and status ok, and that `--out` wrote the same table and
the JSON. The fast tests feed the log reader TensorFlow's placement lines as
a GPU machine writes them (no GPU here), so the GPU/CPU counting and the
verdict are tested where the script itself cannot reach a GPU.
"""

import importlib.util
import json
import math
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _load_script():
    # Standard library only: importing it does not import TensorFlow.
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _device(kind):
    return f"/job:localhost/replica:0/task:0/device:{kind}:0"


def _placed(node, op, kind):
    return f"I0000 00:00:17.1 5909 placer.cc:162] {node}: ({op}): {_device(kind)}\n"


def _executed(op, kind):
    return f"I0000 00:00:17.1 5909 execute.cc:1775] Executing op {op} in device {_device(kind)}\n"


def _message(gpu_check, kind, payload=""):
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    return f"{gpu_check.PREFIX}{kind} {payload}\n"


def _worker_log(gpu_check, b_lines, gpus=("NVIDIA H100 80GB HBM3",), rows=2):
    """A log of a run with `rows` planned rows; arm b of row 0 logs `b_lines`."""
    meta = dict(preset="gpu", gpus=list(gpus), device=(list(gpus) or ["CPU"])[0])
    plan = [
        dict(check=f"check {i}", mode="XLA", arms=["ours", "tfp.vi"], unit="ms/step")
        for i in range(rows)
    ]
    lines = [_message(gpu_check, "meta", meta), _message(gpu_check, "plan", plan)]
    lines.append(_executed("_EagerConst", "CPU"))  # outside any probe: not counted
    for index in range(rows):
        for arm in "ab":
            lines.append(_message(gpu_check, "probe-begin", f"r{index}.{arm}"))
            lines.append(_placed("Mul", "Mul", "GPU"))
            lines.append(_executed("__inference_step_1", "GPU"))
            if (index, arm) == (0, "b"):
                lines.extend(b_lines)
            lines.append(_message(gpu_check, "probe-end", f"r{index}.{arm}"))
        result = dict(
            index=index, a=2.0, b=4.0, a_compile_s=1.0, b_compile_s=1.5, status="ok"
        )
        lines.append(_message(gpu_check, "row", result))
    lines.append(_message(gpu_check, "done"))
    log = gpu_check.WorkerLog()
    for line in lines:
        log.feed(line)
    return log


def test_placements_on_a_gpu_are_counted_per_probe_and_device():
    gpu_check = _load_script()
    log = _worker_log(
        gpu_check,
        [_placed("x", "SobolSample", "CPU"), _executed("IteratorGetNext", "CPU")],
    )
    text, data, ok = gpu_check.report(log, 0, 1.0)
    assert ok
    a, b = data["rows"][0]["placement"]["a"], data["rows"][0]["placement"]["b"]
    assert (a["GPU"], a["CPU"]) == (2, 0)
    # The CPU op is counted and named; tf.data's iterator op is counted apart.
    assert (b["GPU"], b["CPU"], b["input pipeline"]) == (2, 1, 1)
    assert b["not_gpu_ops"] == {"SobolSample": 1}
    assert data["rows"][0]["ratio"] == 0.5
    assert data["all_ops_on_gpu"] is False
    assert "row 1 (tfp.vi): not on the GPU: SobolSample x1" in text
    assert "| 2/0 | 2/1 | ok |" in text


def test_a_run_with_every_op_on_the_gpu_says_so():
    gpu_check = _load_script()
    text, data, ok = gpu_check.report(_worker_log(gpu_check, []), 0, 1.0)
    assert ok and data["all_ops_on_gpu"] is True
    assert "Every logged op placement was on the GPU." in text


def test_without_a_gpu_the_verdict_says_the_cpu_ran_everything():
    gpu_check = _load_script()
    log = _worker_log(gpu_check, [], gpus=())
    text, data, ok = gpu_check.report(log, 0, 1.0)
    assert ok and data["all_ops_on_gpu"] is None
    assert "No GPU visible" in text


def test_a_row_that_did_not_run_or_is_not_finite_fails_the_run():
    gpu_check = _load_script()
    log = _worker_log(gpu_check, [], rows=3)
    del log.rows[2]  # as if the worker died during the last row
    log.done = False
    log.rows[1]["a"] = math.nan
    _, data, ok = gpu_check.report(log, -9, 1.0)
    assert not ok
    statuses = [r["status"] for r in data["rows"]]
    assert statuses[0] == "ok"
    assert statuses[1].startswith("FAILED: not finite: a")
    assert statuses[2] == "FAILED: not run (worker exited with status -9)"


def _table_rows(stdout):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| # | check"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return lines[start], rows


@pytest.mark.slow  # about 2 minutes on an idle 2-core machine, more under load
def test_cpu_preset_prints_every_row_with_finite_numbers(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--preset",
            "cpu",
            "--out",
            str(tmp_path),
            "--time-limit",
            "1500",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    header, rows = _table_rows(result.stdout)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (tmp_path / "gpu_check.md").read_text().strip() == result.stdout.strip()
    assert len(rows) == len(data["rows"]) == 19
    columns = [c.strip() for c in header.strip("|").split(" | ")]
    for cells in rows:
        row = dict(zip(columns, cells, strict=True))
        for name in ("A", "B", "A/B", "A compile s", "B compile s"):
            assert math.isfinite(float(row[name])), (name, cells)
        for name in ("A ops GPU/CPU", "B ops GPU/CPU"):
            # No GPU here: no op on one, and at least the step itself on the CPU.
            gpu, cpu = map(int, re.fullmatch(r"(\d+)/(\d+)", row[name]).groups())
            assert gpu == 0 and cpu >= 1, (name, cells)
        assert row["status"] == "ok", cells
    checks = [(r["check"], r["mode"]) for r in data["rows"]]
    for estimator in (
        "SCORE_FUNCTION",
        "REPARAMETERIZATION",
        "DOUBLY_REPARAMETERIZED",
        "VIMCO",
    ):
        modes = {
            mode
            for check, mode in checks
            if check.startswith(f"loss step {estimator},")
        }
        assert modes == {"eager", "graph", "XLA"}, estimator
    for part in (
        "fit_surrogate_posterior",
        "vs REPARAMETERIZATION, 100-d",
        "sampling='rqmc'",
        "Keras IWAE epoch",
    ):
        assert any(part in check for check, _ in checks), part
    meta = data["meta"]
    assert meta["preset"] == "cpu" and meta["gpus"] == []
    assert meta["tensorflow"] and meta["tensorflow_probability"] and meta["device"]
    assert data["all_rows_ok"] is True and data["all_ops_on_gpu"] is None
