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
`n` samples (and, with `--batch-size B`, reading batches of `B / R` rows):
what a replica computes, without the synchronization.

On a machine with fewer cores than workers the workers share the cores, so
the speed-up is bounded by the core count (2 on the development machine).

    python benchmarks/multi_worker_throughput.py --workers 1 2 4
    python benchmarks/multi_worker_throughput.py --rows 1000000 --batch-size 512
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from tfp_vi_estimators import local_cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "multi_worker_fit.py")


def _run(num_workers, sample_size, batch_size, args, distributed=True):
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
        "--batch-size",
        str(batch_size),
        "--output",
        output,
    ]
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    if distributed:
        processes = local_cluster.start_workers(command[1:], num_workers, env=env)
    else:
        processes = [subprocess.Popen(command, env=env) for _ in range(num_workers)]
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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="global minibatch rows a step (0: the full data every step)",
    )
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        step = _ms_per_step(
            _run(workers, args.sample_size, args.batch_size, args), args
        )
        alone = _run(
            1,
            args.sample_size // workers,
            args.batch_size // workers,
            args,
            distributed=False,
        )
        compute = _ms_per_step(alone, args)
        rows.append((workers, step, 1000 / step, compute, step - compute))
    data = f"batches of {args.batch_size}" if args.batch_size else "full data"
    print(
        f"S = {args.sample_size} global draws, {args.rows} rows ({data}), "
        f"D = {args.dim}"
    )
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
