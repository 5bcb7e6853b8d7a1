"""Gradient variance and SNR of every estimator and option on shared problems.

The configurations live in `tfp_vi_estimators.report.variance` (the report
shows the same table). Every estimator on a problem uses the same per-draw
seeds and the same number of target evaluations per gradient.

    python benchmarks/variance_table.py [--draws 2000]
"""

import argparse
import warnings

import tensorflow as tf

from tfp_vi_estimators.diagnostics import format_table
from tfp_vi_estimators.report.variance import COLUMNS, variance_tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.draws < 2:
        parser.error(f"--draws must be at least 2; got {args.draws}")
    warnings.simplefilter("ignore")
    tf.get_logger().setLevel("ERROR")
    tables = variance_tables(args.draws)
    for problem, rows in tables:
        print(f"\n### {problem.name}: {problem.description} ({args.draws} draws)\n")
        print(format_table(rows, COLUMNS))
    return tables


if __name__ == "__main__":
    main()
