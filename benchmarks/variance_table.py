"""Gradient variance and SNR of every estimator and option on shared problems.

Every estimator on a problem uses the same per-draw seeds and the same number
of target evaluations per gradient (S * K = 16). Reported per parameter
group: total gradient variance (summed over elements) and mean SNR
(|mean| / sd, averaged over elements), from `diagnostics.gradient_moments`.

    python benchmarks/variance_table.py [--draws 2000]
"""

import argparse
import warnings

import tensorflow as tf

from tfp_vi_estimators import GradientEstimators as GE
from tfp_vi_estimators import estimators, problems
from tfp_vi_estimators.diagnostics import compare_estimators, format_table


def configurations():
    """(problem, {label: (estimator, sample_size, importance_sample_size)})."""
    score_options = {
        "SCORE_FUNCTION S=16": (GE.SCORE_FUNCTION, 16, 1),
        "ScoreFunction(leave_one_out) S=16": (
            estimators.ScoreFunction("leave_one_out"),
            16,
            1,
        ),
        "VIMCO S=2 K=8": (GE.VIMCO, 2, 8),
        "SCORE_FUNCTION S=2 K=8": (GE.SCORE_FUNCTION, 2, 8),
    }
    pathwise = {
        "REPARAMETERIZATION S=16": (GE.REPARAMETERIZATION, 16, 1),
        "DOUBLY_REPARAMETERIZED S=16": (GE.DOUBLY_REPARAMETERIZED, 16, 1),
        "DoublyReparameterized(0.5) S=16": (
            estimators.DoublyReparameterized(0.5),
            16,
            1,
        ),
        "REPARAMETERIZATION S=2 K=8": (GE.REPARAMETERIZATION, 2, 8),
        "DOUBLY_REPARAMETERIZED S=2 K=8": (GE.DOUBLY_REPARAMETERIZED, 2, 8),
    }
    mixed = {
        "MixedReparameterization(auto) S=16": (
            estimators.MixedReparameterization(),
            16,
            1,
        ),
        "MixedReparameterization(None) S=16": (
            estimators.MixedReparameterization(None),
            16,
            1,
        ),
    }
    mixture = {
        "MixtureStickingTheLanding S=4 (x3 comps)": (
            estimators.MixtureStickingTheLanding(),
            4,
            1,
        ),
        "REPARAMETERIZATION (implicit) S=12": (GE.REPARAMETERIZATION, 12, 1),
    }
    return [
        (problems.gaussian(), {**score_options, **pathwise}),
        (problems.mixed_discrete(), {**score_options, **mixed}),
        (problems.mixture(), {**score_options, **mixture}),
    ]


def run(num_draws, seed=(20, 26)):
    tables = []
    for problem, configs in configurations():
        rows = []
        for label, (estimator, sample_size, k) in configs.items():
            for row in compare_estimators(
                problem.target_log_prob_fn,
                problem.surrogate,
                {label: estimator},
                num_draws=num_draws,
                seed=seed,
                variables=problem.variables,
                sample_size=sample_size,
                importance_sample_size=k,
            ):
                rows.append(dict(problem=problem.name, **row))
        tables.append((problem, rows))
    return tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    tf.get_logger().setLevel("ERROR")
    tables = run(args.draws)
    for problem, rows in tables:
        print(f"\n### {problem.name}: {problem.description} ({args.draws} draws)\n")
        print(
            format_table(rows, ["estimator", "variable", "total_variance", "mean_snr"])
        )
    return tables


if __name__ == "__main__":
    main()
