"""`python -m tfp_vi_estimators report [--out DIR] [--quick]`.

Writes report.md, report.json and PNG plots into `--out` on embedded problems
(no download, no GPU needed), printing one progress line per step and a
summary table at the end. `--quick` runs every section at reduced size (under
five minutes on two cores); the default full run takes under thirty.
"""

import argparse
import dataclasses
import pathlib
import sys

__all__ = ["main"]


def _parser(section_names):
    parser = argparse.ArgumentParser(
        prog="python -m tfp_vi_estimators report",
        description="Reproduce the estimator report: Roeder et al. Fig. 1, SNR "
        "against K, variance, bias and speed tables, PSIS k-hat of fitted "
        "surrogates, iid against quasi-Monte Carlo gradient variance, posterior "
        "accuracy on Inference Gym targets.",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("vi_report"),
        metavar="DIR",
        help="output directory (created if missing; default: ./vi_report)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="reduced sizes: under 5 minutes"
    )
    # Seconds per section, for tests; not a meaningful report.
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sections",
        default=None,
        metavar="NAMES",
        help="comma-separated subset of: " + ", ".join(section_names),
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed (default 0)"
    )
    return parser


def _checked_args(parser, argv, names):
    """`(flags, chosen sections or None)`; `parser.error` (exit 2) for bad flags."""
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    chosen = None
    if args.sections is not None:
        chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in names]
        if unknown or not chosen:
            parser.error(
                f"--sections: unknown {', '.join(unknown) or '(empty)'}; choose from "
                + ", ".join(names)
            )
    if args.seed < 0:
        parser.error(f"--seed must be non-negative; got {args.seed}")
    return args, chosen


def main(argv=None):
    """Parses `argv`, runs the report, returns it as a dict.

    Raises:
      SystemExit: 2 for bad flags (with an argparse message), 1 if a section
        failed (the report is still written, with the error).
    """
    from tfp_vi_estimators.report.run import SECTIONS, run_report
    from tfp_vi_estimators.report.settings import PRESETS

    names = [s.name for s in SECTIONS]
    args, sections = _checked_args(_parser(names), argv, names)
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    settings = dataclasses.replace(PRESETS[preset], seed=args.seed)
    command = "python -m tfp_vi_estimators report " + " ".join(
        sys.argv[2:] if argv is None else argv
    )
    report = run_report(settings, args.out, sections, command=command.strip())
    failed = [n for n, s in report["sections"].items() if s["status"] == "error"]
    if failed:
        print(f"error: section(s) failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
