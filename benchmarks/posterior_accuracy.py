"""Posterior accuracy on Inference Gym targets with known answers (issue 21).

The command line of the report's `accuracy` section: the same code
(`tfp_vi_estimators.report.accuracy`), by default at the full preset (every
target that loads offline, three surrogate families, every arm of
`accuracy_fits.ARMS`, 5 seeds, 2000 steps). It needs `inference_gym`
(`pip install 'tfp_vi_estimators[report]'`).

    python benchmarks/posterior_accuracy.py [--quick] [--targets A,B]
        [--families mean-field,full-rank] [--arms tfp.vi,DOUBLY_REPARAMETERIZED]
        [--steps N] [--seeds N] [--no-jit] [--out DIR]
    python benchmarks/posterior_accuracy.py --render A/posterior_accuracy.json
        [B/posterior_accuracy.json ...] --out DIR
    python benchmarks/posterior_accuracy.py --retime A/posterior_accuracy.json
        --out DIR

With several targets each is fitted in a child process (XLA keeps every
compiled program until its process ends: one process for all targets would
grow by about 50 MB per fit). It writes `posterior_accuracy.json` (every
number, rewritten after each target, so a long run that stops keeps what it
measured),
`posterior_accuracy.md` (the section's tables and verdicts) and
`posterior_accuracy.png` (error against steps) into `--out`, and prints one
progress line per fit. `--render` writes the Markdown and the plot of saved
runs (several, merged: a long benchmark split into parts) without fitting
again; `--retime` measures the step times of a saved run again and reads its
equal-time errors off the saved curves (`accuracy_retime`).
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time
import warnings

from tfp_vi_estimators.report import accuracy, accuracy_retime, accuracy_tables
from tfp_vi_estimators.report.formatting import to_jsonable
from tfp_vi_estimators.report.progress import Progress
from tfp_vi_estimators.report.settings import PRESETS

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "posterior_accuracy"
STEM = "posterior_accuracy"


def _names(text):
    return (
        None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())
    )


def settings_from(args):
    """The preset (`full`, or `quick`) with the flags' changes."""
    changes = dict(seed=args.seed)
    for field, value in (
        ("accuracy_targets", _names(args.targets)),
        ("accuracy_families", _names(args.families)),
        ("accuracy_arms", _names(args.arms)),
        ("accuracy_steps", args.steps),
        ("accuracy_seeds", args.seeds),
    ):
        if value is not None:
            changes[field] = value
    if args.no_jit:
        changes["accuracy_jit_compile"] = False
    return dataclasses.replace(PRESETS["quick" if args.quick else "full"], **changes)


def write(result, out, meta, with_plot=True):
    """Writes the JSON (with `meta`), the Markdown and the plot into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    data = dict(meta=meta, result=to_jsonable(result))
    (out / f"{STEM}.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / f"{STEM}.md").write_text(
        f"# {accuracy.TITLE}\n\n`{meta['command']}`\n\n"
        + accuracy_tables.render(result)
        + f"\n\n![error against steps]({STEM}.png)\n"
    )
    if with_plot and result.rows:
        accuracy_tables.plot(result, out / f"{STEM}.png")


def render_only(paths, out):
    """Writes the Markdown and plot of the saved runs `paths` (JSON files of
    this script, with the same protocol), merged, into `out`: a later run's
    row of a target, family and arm replaces an earlier run's (a refused arm
    measured again after a fix)."""
    runs = [json.loads(pathlib.Path(path).read_text()) for path in paths]
    first = runs[0]["result"]
    targets, rows, pathfinder = {}, {}, {}
    for run in runs:  # a later run's row replaces an earlier one's
        targets.update({t["name"]: t for t in run["result"]["targets"]})
        rows.update(
            {(r["target"], r["family"], r["arm"]): r for r in run["result"]["rows"]}
        )
        pathfinder.update(
            {
                (r["kind"], r["target"], r.get("paths"), r.get("family")): r
                for r in run["result"].get("pathfinder", ())
            }
        )
    merged = dict(
        first,
        targets=list(targets.values()),
        rows=list(rows.values()),
        pathfinder=list(pathfinder.values()),
    )
    result = accuracy.AccuracyResult(**merged)
    commands = " && ".join(run["meta"]["command"] for run in runs)
    seconds = sum(run["meta"].get("seconds", 0.0) for run in runs)
    write(
        result,
        out,
        dict(command=commands, seconds=seconds, runs=[r["meta"] for r in runs]),
    )
    print(accuracy_tables.render(result))


def retime(path, out):
    """Measures the step times of the saved run `path` again (each target in
    a child process) and writes it, with its equal-time errors read off the
    saved curves (`accuracy_retime`), into `out`."""
    data = json.loads(pathlib.Path(path).read_text())
    saved = data["result"]
    settings = dataclasses.replace(
        PRESETS["full"],
        seed=data["meta"]["settings"]["seed"],
        accuracy_steps=saved["steps"],
        accuracy_seeds=saved["seeds"],
        accuracy_draws_per_step=saved["draws_per_step"],
        accuracy_learning_rate=saved["learning_rate"],
        accuracy_jit_compile=saved["jit_compile"],
    )
    by_target = {}
    for row in saved["rows"]:
        by_target.setdefault(row["target"], []).append(row)
    rows = []
    for name, target_rows in by_target.items():
        rows += accuracy.in_child(
            accuracy_retime.retime_target, name, target_rows, settings
        )
    result = accuracy.AccuracyResult(**dict(saved, rows=rows))
    meta = dict(
        data["meta"], retimed=f"python benchmarks/posterior_accuracy.py --retime {path}"
    )
    write(result, out, meta)


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the report's quick preset"
    )
    parser.add_argument("--targets", help="comma-separated gym target names")
    parser.add_argument("--families", help="mean-field, full-rank, affine")
    parser.add_argument("--arms", help="comma-separated arm labels")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-jit", action="store_true", help="fit without XLA")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--retime",
        metavar="JSON",
        help="measure the step times of a saved run again into --out",
    )
    parser.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="write the tables and plot of saved runs (merged) into --out",
    )
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.render:
        return render_only(args.render, args.out)
    if args.retime:
        return retime(args.retime, args.out)
    warnings.simplefilter("ignore")
    settings = settings_from(args)
    command = "python benchmarks/posterior_accuracy.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    meta = dict(command=command.strip(), settings=to_jsonable(settings))
    progress, start = Progress(), time.perf_counter()

    def save(result, with_plot=False):
        seconds = time.perf_counter() - start
        write(result, args.out, dict(meta, seconds=seconds), with_plot)

    result = accuracy.compute(settings, progress, on_rows=save)
    save(result, with_plot=True)
    print(accuracy_tables.render(result))
    progress(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
