"""Peak resident memory of the gradient diagnostics, each run in a fresh process.

`diagnostics.gradient_moments` on the SNR section's linear Gaussian model
(D = 20, 16 data points, REPARAMETERIZATION at K = `--k`), for each number of
draws, streamed in chunks of `--chunk-size` and all at once (`chunk_size =
num_draws`, the behaviour before streaming). Each measurement runs in its own
Python process, whose `ru_maxrss` is the peak; a process that builds the model
but draws nothing gives the baseline (TensorFlow alone is several hundred MB).
Printed: a Markdown table of peak MB, peak above the baseline, wall and CPU
seconds, and the log-log slope of the added memory against the draws.

    python benchmarks/memory.py [--draws 1000 4000 16000] [--k 16] [--chunk-size 64]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def child(num_draws, chunk_size, k):
    """Runs one measurement in this process and prints its usage as JSON."""
    import tensorflow as tf

    from tfp_vi_estimators.diagnostics import gradient_moments
    from tfp_vi_estimators.report import scaling

    tf.get_logger().setLevel("ERROR")
    model, loss = scaling._snr_model_loss(importance_sample_size=k)
    start = time.perf_counter()
    if num_draws:
        moments = gradient_moments(loss, model.variables, num_draws, (1, 2), chunk_size)
        [v.numpy() for v in moments.variance]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            dict(
                peak_mb=usage.ru_maxrss / 1024.0,
                seconds=time.perf_counter() - start,
                cpu_seconds=usage.ru_utime + usage.ru_stime,
            )
        )
    )


def measure(num_draws, chunk_size, k):
    """Usage dict of one measurement in a fresh process."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(num_draws), str(chunk_size), str(k)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    baseline = measure(0, args.chunk_size, args.k)["peak_mb"]
    print(f"baseline (TensorFlow, model, no draws): {baseline:.0f} MB, K={args.k}\n")
    print(
        "| draws | chunk_size | peak MB | above baseline MB | wall s (the call) | CPU s (whole process) |"
    )
    print("|---|---|---|---|---|---|")
    added = {"streamed": [], "all at once": []}
    for num_draws in args.draws:
        for key, chunk in (("streamed", args.chunk_size), ("all at once", num_draws)):
            usage = measure(num_draws, chunk, args.k)
            added[key].append(usage["peak_mb"] - baseline)
            print(
                f"| {num_draws} | {chunk} ({key}) | {usage['peak_mb']:.0f} | "
                f"{usage['peak_mb'] - baseline:.0f} | {usage['seconds']:.1f} | "
                f"{usage['cpu_seconds']:.1f} |",
                flush=True,
            )
    for key, values in added.items():
        values = np.maximum(values, 1.0)
        slope = np.polyfit(np.log(args.draws), np.log(values), 1)[0]
        print(f"\nlog-log slope of the added memory against draws, {key}: {slope:.2f}")
    return None


if __name__ == "__main__":
    main()
