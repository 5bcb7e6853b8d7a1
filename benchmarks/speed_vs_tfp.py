"""Loss-plus-gradient step time: tfp_vi_estimators against tfp.vi, same process.

The timing harness is `tfp_vi_estimators.report.timing` (the report's speed
section uses it too): for each problem and estimator, both implementations
are compiled with `tf.function(jit_compile=True)` and timed alternately
(ours, theirs, ours, ...) in rounds, so drift on a shared machine hits both
alike. Printed: the median milliseconds per step of each, their ratio (ours /
tfp.vi) and each one's compile time (the first call), plus, on the decoder target, our DOUBLY_REPARAMETERIZED (with
its correct model gradient) against our REPARAMETERIZATION.

    python benchmarks/speed_vs_tfp.py [--rounds 15] [--steps 10]
"""

import argparse
import warnings

from tfp_vi_estimators.report import timing


def decoder_dreg_over_reparameterization(rows):
    """`{K: our DReG ms / our REPARAMETERIZATION ms}` on the decoder problem."""
    ratios = {}
    for k in sorted({r["K"] for r in rows if r["problem"] == "decoder"}):
        by = {
            r["estimator"]: r for r in rows if r["problem"] == "decoder" and r["K"] == k
        }
        ratios[k] = (
            by["DOUBLY_REPARAMETERIZED"]["ours_ms"]
            / by["REPARAMETERIZATION"]["ours_ms"]
        )
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(timing.HEADER)
    rows = timing.run(
        args.rounds,
        args.steps,
        on_row=lambda row: print(timing.format_row(row), flush=True),
    )
    print()
    for k, ratio in decoder_dreg_over_reparameterization(rows).items():
        print(
            f"decoder K={k}: our DOUBLY_REPARAMETERIZED / our REPARAMETERIZATION = {ratio:.2f}"
        )
    return rows


if __name__ == "__main__":
    main()
