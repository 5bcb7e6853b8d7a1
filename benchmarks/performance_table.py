"""The performance table: ours against tfp.vi per estimator, and how cost grows.

Prints Markdown (the tables of `docs/performance.md`):

1. per estimator and configuration, the XLA-compiled loss-and-gradient step
   of ours and `tfp.vi`'s, timed alternately in the same process (medians over
   rounds), their ratio, and each one's compile time (the first call), from
   the report's timing harness `tfp_vi_estimators/report/timing.py`;
2. placeholder rows for the whole fit (`benchmarks/fit_vs_tfp.py`) and for
   DOUBLY_REPARAMETERIZED against REPARAMETERIZATION on full-rank and flow
   surrogates (`benchmarks/dreg_full_rank.py`), filled from those benchmarks;
3. growth: step time against `sample_size` and the dimension, and the peak
   memory `gradient_moments` adds against the number of draws (streamed and
   all at once), with log-log slopes (`tfp_vi_estimators/report/scaling.py`);
   the plot is saved as `docs/img/performance.png` (or `--plot`).

For the peak memory of fresh processes, run `benchmarks/memory.py`.

    python benchmarks/performance_table.py [--rounds 15] [--steps 10] \
        [--configs 4] [--sample-sizes 16 64 256 1024] [--dims 10 40 160] \
        [--draws 256 1024 4096] [--plot docs/img/performance.png]
"""

import argparse
import pathlib
import warnings

import tensorflow as tf

from tfp_vi_estimators.report import scaling, speed, timing

PLACEHOLDERS = """
| whole fit, 1,000 steps (XLA) | ours s | tfp.vi s | ours / tfp.vi | ours compile s | tfp.vi compile s |
|---|---|---|---|---|---|
| logistic regression N=2000, D=20, S=8 | _from benchmarks/fit_vs_tfp.py_ | | | | |

| DOUBLY_REPARAMETERIZED / REPARAMETERIZATION step time | XLA | graph |
|---|---|---|
| 100-d MultivariateNormalTriL, S=64 | _from benchmarks/dreg_full_rank.py_ | |
| MAF flow | _from benchmarks/dreg_full_rank.py_ | |
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--configs", type=int, default=len(timing.CONFIGURATIONS))
    parser.add_argument(
        "--sample-sizes", type=int, nargs="+", default=[16, 64, 256, 1024]
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 40, 160])
    parser.add_argument("--draws", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument(
        "--plot", type=pathlib.Path, default=pathlib.Path("docs/img/performance.png")
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    tf.get_logger().setLevel("ERROR")
    print(timing.HEADER)
    rows = timing.run(
        args.rounds,
        args.steps,
        max_configs=args.configs,
        on_row=lambda row: print(timing.format_row(row), flush=True),
    )
    print(PLACEHOLDERS)
    step_rows = scaling.step_time_sweep(
        args.sample_sizes, args.dims, args.rounds, args.steps, progress=print
    )
    memory_rows = scaling.draws_memory(args.draws, args.chunk_size, progress=print)
    result = speed.SpeedResult(
        rounds=args.rounds,
        steps=args.steps,
        rows=tuple(rows),
        median_ratio=float("nan"),
        scaling=tuple(step_rows),
        memory=tuple(memory_rows),
        slopes=speed.growth_slopes(step_rows, memory_rows),
    )
    print("\n" + speed.render_growth(result))
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    scaling.plot(step_rows, memory_rows, args.plot)
    print(f"\nwrote {args.plot}")
    return result


if __name__ == "__main__":
    main()
