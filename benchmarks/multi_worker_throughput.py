"""Steps per second of `fit_surrogate_posterior` on 1, 2 and 4 workers.

Each job runs `examples/multi_worker_fit.py` in R worker processes on this
machine (MultiWorkerMirroredStrategy, loopback ports, CPU only, one thread per
worker), with the same global `sample_size` S: each replica draws S / R. A
worker fits twice, a warm-up of `--warmup-steps` and the measured fit of
`--num-steps` (both trace their steps), so the steady time per step is

```none
t(R) = (seconds(num_steps) - seconds(warmup_steps)) / (num_steps - warmup_steps)
```

(the chief's). The all-reduce overhead per step is `t(R) - c(S / R)`, where
`c(n)` is the steady time per step of one process without a strategy drawing
`n` samples: what a replica computes, without the synchronization.

On a machine with fewer cores than workers the workers share the cores, so
the speed-up is bounded by the core count (2 on the development machine).

    python benchmarks/multi_worker_throughput.py --workers 1 2 4
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "multi_worker_fit.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run(num_workers, sample_size, args, distributed=True):
    """Runs one job; returns the chief's summary."""
    directory = tempfile.mkdtemp()
    output = os.path.join(directory, "out-{index}.json")
    command = [
        sys.executable,
        SCRIPT,
        "--num-steps",
        str(args.num_steps),
        "--warmup-steps",
        str(args.warmup_steps),
        "--sample-size",
        str(sample_size),
        "--rows",
        str(args.rows),
        "--dim",
        str(args.dim),
        "--output",
        output,
    ]
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(num_workers)]}
    processes = []
    for index in range(num_workers):
        env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="-1")
        env.pop("TF_CONFIG", None)
        if distributed:
            task = {"type": "worker", "index": index}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        processes.append(subprocess.Popen(command, env=env))
    for p in processes:
        if p.wait(timeout=1800):
            raise RuntimeError(f"a worker failed with exit code {p.returncode}")
    with open(output.format(index=0)) as f:
        return json.load(f)


def _ms_per_step(summary, args):
    seconds = summary["seconds"] - summary["warmup_seconds"]
    return 1000 * seconds / (args.num_steps - args.warmup_steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--sample-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=1200)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        step = _ms_per_step(_run(workers, args.sample_size, args), args)
        alone = _run(1, args.sample_size // workers, args, distributed=False)
        compute = _ms_per_step(alone, args)
        rows.append((workers, step, 1000 / step, compute, step - compute))
    print(f"S = {args.sample_size} global draws, {args.rows} rows, D = {args.dim}")
    print(
        "| workers | ms/step | steps/s | one process, S/R draws, ms/step "
        "| all-reduce overhead, ms/step |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for workers, step, rate, compute, overhead in rows:
        print(
            f"| {workers} | {step:.2f} | {rate:.0f} | {compute:.2f} | {overhead:.2f} |"
        )


if __name__ == "__main__":
    main()
