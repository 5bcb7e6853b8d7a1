"""Pathfinder against ADVI on Inference Gym targets with known posteriors (issue 24).

Zhang et al. (JMLR 2022) claim that Pathfinder's draws are as good as ADVI's or
better at one to two orders of magnitude fewer log-density and gradient
evaluations. This checks the claim here, on the targets and with the metrics
of the posterior-accuracy benchmark (`benchmarks/posterior_accuracy.py`,
issue 21), whose target loading (`report.accuracy_targets.load_target`:
the model on one unconstrained vector, its elementwise bijector, NUTS ground
truth) and metrics (`report.accuracy_metrics`: standardized mean error and sd
log-ratio, medians over parameters, in the constrained space) it imports:

- **Pathfinder**, 1 path and `--paths` paths (default 8; uniform `(-2, 2)^d`
  starts, library defaults: history 6, 25 ELBO draws, 1000 draws per path),
  compiled with XLA, timed after compilation. One path is judged by its
  Gaussian (exact marginal moments by quadrature, as ADVI's); several by their
  pooled draws with PSIS weights (weighted moments).
- **ADVI**: `tfp.vi.fit_surrogate_posterior` and ours
  (`DOUBLY_REPARAMETERIZED`) on the mean-field and full-rank families of the
  accuracy benchmark (full-rank up to 120 parameters) and on our low-rank
  family (`build_low_rank_surrogate_posterior`, rank `min(d, 12)`: Pathfinder's
  rank), `--steps` Adam(0.02) steps of 8 draws (one gradient evaluation per
  draw), the errors traced at every step, `--seeds` replicates as one batch.
- **A fit started from Pathfinder** (ours, each family, its one-path Gaussian
  as the initial values: `surrogate_from_pathfinder`'s construction), with
  Adam(0.02) and Adam(0.005), against the family's better fit from scratch
  (`tfp.vi` or ours): the steps each takes to reach the from-scratch fit's
  final errors.

Reported per target: the errors; gradient evaluations (Pathfinder: L-BFGS
value-and-gradient calls of all paths; its ELBO and draws are log-density
evaluations without a gradient, counted apart); the process's CPU time
(Pathfinder: the compiled run; ADVI: steps times the median step time of a
compiled loop of steps; CPU time, since the machine is shared); the gradient
evaluations ADVI needs to reach Pathfinder's errors (standardized mean error
and sd log-ratio both); whether the paper's claim holds (Pathfinder's errors
no worse than the best final ADVI errors at ten times fewer gradient
evaluations); and whether a fit from Pathfinder reaches the from-scratch
errors in at most a quarter of the steps.

    python benchmarks/pathfinder_vs_advi.py [--targets A,B] [--seeds 3]
        [--steps 2000] [--paths 8] [--out DIR]
"""

import argparse
import dataclasses
import json
import pathlib
import time
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.report import (
    accuracy_fits,
    accuracy_pathfinder,
    accuracy_targets,
)
from tfp_vi_estimators.report.settings import PRESETS

tfd = tfp.distributions
tfb = tfp.bijectors

TARGETS = (
    "EightSchools",
    "IllConditionedGaussian",
    "BrownianMotionMissingMiddleObservations",
    "StochasticVolatilitySP500Small",
    "SyntheticItemResponseTheory",
    "GermanCreditNumericLogisticRegression",
)
FAMILIES = ("mean-field", "full-rank", "low-rank")
LIBRARIES = ("tfp.vi", "ours")
RANK = 12
# A fit from Pathfinder runs with the benchmark's learning rate and a quarter
# of it: from a good start Adam's second-moment estimate holds no large early
# gradients, and its late steps are larger than from scratch.
CONTINUATION_LEARNING_RATES = (0.02, 0.005)
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "pathfinder_vs_advi"


def _arm(library):
    if library == "tfp.vi":
        return accuracy_fits.Arm("tfp.vi", library="tfp.vi")
    return accuracy_fits.Arm("ours", tve.GradientEstimators.DOUBLY_REPARAMETERIZED)


# ---------------------------------------------------------------- Pathfinder


def pathfinder_runs(target, num_paths, seeds):
    """One compiled (XLA) Pathfinder run per replicate: a list of dicts."""
    return accuracy_pathfinder.pathfinder_runs(target, num_paths, seeds, True)


# ---------------------------------------------------------------- ADVI


def _low_rank_surrogate(target, batch, initial=None, seed=(0, 0)):
    """Our low-rank family, `batch` replicates: from `N(0, I)` (loc 0, diag 1,
    U = 0, V random), as the accuracy benchmark's families, or `initial`."""
    rank = min(target.dim, RANK)
    if initial is None:
        v = tf.random.stateless_normal([batch, target.dim, rank], seed) / np.sqrt(
            target.dim
        )
        initial = (
            tf.zeros([batch, target.dim]),
            tf.ones([batch, target.dim]),
            tf.zeros([batch, target.dim, rank]),
            v,
        )
    loc, diag, u, v = initial
    return tve.build_low_rank_surrogate_posterior(
        target.dim,
        rank,
        batch_shape=[batch],
        initial_loc=loc,
        initial_scale_diag=diag,
        initial_scale_factors=(u, v),
    )


def fit_trace(target, surrogate, library, settings, seed):
    """`[steps, seeds]` standardized mean errors and sd log-ratios of a fit,
    and its CPU seconds (`accuracy_fits.fit_trace`: XLA, errors by
    quadrature; the low-rank family's marginals without a dense matrix)."""
    start = time.process_time()
    trace = accuracy_fits.fit_trace(target, surrogate, _arm(library), settings, seed)
    return trace["mean_error"], trace["sd_log_ratio"], time.process_time() - start


def step_ms(target, make, library, settings, rounds=3, steps=200):
    """Median CPU milliseconds per step of a compiled loop of the fit's steps
    (`accuracy_fits.compiled_steps`, as the accuracy benchmark times its arms)."""
    run = accuracy_fits.compiled_steps(target, make(), _arm(library), settings)
    accuracy_fits.run_seconds(run, 1, 0)  # compiles
    cpu = [accuracy_fits.run_seconds(run, steps, r + 1)[1] for r in range(rounds)]
    return float(np.median(cpu)) / steps * 1e3


def _make(target, family, settings, seed, initial=None):
    batch = settings.accuracy_seeds
    if family == "low-rank":
        return lambda: _low_rank_surrogate(target, batch, initial, seed)
    if initial is None:
        return lambda: accuracy_targets.make_surrogate(family, target.dim, batch, seed)
    return lambda: accuracy_pathfinder.family_at(family, initial)


# ---------------------------------------------------------------- the rows


def _reach(mean_error, sd_ratio, levels):
    """Median over replicates of the first step at which both errors are at
    most `levels` (`accuracy_pathfinder.steps_to_reach`), or None."""
    return _median_or_none(
        accuracy_pathfinder.steps_to_reach(mean_error, sd_ratio, *levels)
    )


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def advi_rows(target, pathfinder, settings, seed):
    """ADVI from scratch per family and library, and from Pathfinder (ours)."""
    rows = []
    levels = {
        key: (
            float(np.median([r["mean_error"] for r in runs])),
            float(np.median([r["sd_log_ratio"] for r in runs])),
        )
        for key, runs in pathfinder.items()
    }
    for family in FAMILIES:
        if family == "full-rank" and target.dim > settings.accuracy_max_full_rank_dim:
            continue
        for library in LIBRARIES:
            make = _make(target, family, settings, seed)
            mean_error, sd_ratio, seconds = fit_trace(
                target, make(), library, settings, seed
            )
            ms = step_ms(target, make, library, settings)
            rows.append(
                _advi_row(
                    family, library, "scratch", mean_error, sd_ratio, ms, settings
                )
                | dict(
                    fit_seconds=seconds,
                    steps_to_pathfinder=_reach(mean_error, sd_ratio, levels[1]),
                    steps_to_pathfinder_multi=_reach(
                        mean_error, sd_ratio, levels["multi"]
                    ),
                )
            )
            print(_line(target, rows[-1]), flush=True)
        # The reference: this family's better fit from scratch (tfp.vi or ours).
        reference = min(
            (r for r in rows if r["family"] == family), key=lambda r: r["mean_error"]
        )
        for learning_rate in CONTINUATION_LEARNING_RATES:
            rows.append(
                _continued(
                    target,
                    family,
                    pathfinder,
                    reference,
                    dataclasses.replace(settings, accuracy_learning_rate=learning_rate),
                    seed,
                )
            )
            print(_line(target, rows[-1]), flush=True)
    return rows


def _advi_row(family, library, start, mean_error, sd_ratio, ms, settings):
    steps = settings.accuracy_steps
    return dict(
        family=family,
        library=library,
        start=start,
        mean_error=float(np.median(mean_error[-1])),
        sd_log_ratio=float(np.median(sd_ratio[-1])),
        gradient_evaluations=steps * settings.accuracy_draws_per_step,
        step_ms=ms,
        seconds=steps * ms / 1e3,
        trace=np.median(mean_error, axis=1).tolist(),
        sd_trace=np.median(sd_ratio, axis=1).tolist(),
        learning_rate=settings.accuracy_learning_rate,
    )


def _continued(target, family, pathfinder, scratch, settings, seed):
    """Ours from the one-path Gaussians; steps to the reference (a fit from
    scratch of the same family) to reach its final errors, and this fit's."""
    initial = accuracy_pathfinder.initial_from(pathfinder[1], min(target.dim, RANK))
    make = _make(target, family, settings, seed, initial)
    mean_error, sd_ratio, _ = fit_trace(target, make(), "ours", settings, seed)
    ms = step_ms(target, make, "ours", settings)
    level, sd_level = scratch["mean_error"], scratch["sd_log_ratio"]
    scratch_steps = _reach(
        np.array(scratch["trace"])[:, None],
        np.array(scratch["sd_trace"])[:, None],
        (level, sd_level),
    )
    row = _advi_row(family, "ours", "pathfinder", mean_error, sd_ratio, ms, settings)
    steps = _reach(mean_error, sd_ratio, (level, sd_level))
    return row | dict(
        steps_to_scratch_final=steps,
        scratch_steps=scratch_steps,
        start_mean_error=float(np.median(mean_error[0])),
        reference_library=scratch["library"],
        reference_mean_error=level,
        reference_sd_log_ratio=sd_level,
    )


def _line(target, row):
    return (
        f"{target.name} {row['family']} {row['library']} from {row['start']}: "
        f"mean error {row['mean_error']:.3g}, sd log-ratio {row['sd_log_ratio']:.3g}, "
        f"{row['step_ms']:.2f} ms/step"
    )


def target_rows(name, settings, num_paths):
    try:
        target = accuracy_targets.load_target(name)
    except ValueError as error:
        print(f"{name}: not loaded ({error})", flush=True)
        return dict(target=name, skipped=str(error).splitlines()[0])
    seed = (settings.seed, 24)
    pathfinder = {
        1: pathfinder_runs(target, 1, settings.accuracy_seeds),
        "multi": pathfinder_runs(target, num_paths, settings.accuracy_seeds),
    }
    for key, runs in pathfinder.items():
        s = accuracy_pathfinder.summary(runs)
        print(f"{name} Pathfinder {key}: {s}", flush=True)
    rows = advi_rows(target, pathfinder, settings, seed)
    return dict(
        target=name,
        dim=target.dim,
        truth_noise=target.truth_noise(),
        pathfinder_1=accuracy_pathfinder.summary(pathfinder[1]),
        pathfinder_multi=accuracy_pathfinder.summary(pathfinder["multi"]),
        advi=rows,
    )


# ---------------------------------------------------------------- rendering


def _fmt(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) >= 1000 or value == int(value)):
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _claim_line(row, key, label):
    """Pathfinder against the best final ADVI error of each metric (from
    scratch, any family or library) at ten times fewer gradient evaluations."""
    scratch = [a for a in row["advi"] if a["start"] == "scratch"]
    best_mean = min(scratch, key=lambda a: a["mean_error"])
    best_sd = min(scratch, key=lambda a: a["sd_log_ratio"])
    pf = row[key]
    ratio = best_mean["gradient_evaluations"] / pf["gradient_evaluations"]
    mean_ok = pf["mean_error"] <= best_mean["mean_error"]
    sd_ok = pf["sd_log_ratio"] <= best_sd["sd_log_ratio"]
    holds = mean_ok and sd_ok and ratio >= 10
    return (
        f"Pathfinder ({label}): mean error {_fmt(pf['mean_error'])} against the "
        f"best ADVI's {_fmt(best_mean['mean_error'])} ({best_mean['family']}, "
        f"{best_mean['library']}), sd log-ratio {_fmt(pf['sd_log_ratio'])} against "
        f"{_fmt(best_sd['sd_log_ratio'])} ({best_sd['family']}, "
        f"{best_sd['library']}), at {ratio:.0f}x fewer gradient evaluations: "
        + ("**the claim holds**." if holds else "**the claim does not hold**.")
    )


def verdicts(row, num_paths):
    """Does the paper's claim hold on this target, and does a fit started from
    Pathfinder reach the from-scratch final errors (both metrics) in at most a
    quarter of the steps? One sentence each."""
    lines = [
        _claim_line(row, "pathfinder_1", "1 path"),
        _claim_line(row, "pathfinder_multi", f"{num_paths} paths"),
    ]
    for advi in row["advi"]:
        if advi["start"] != "pathfinder":
            continue
        steps, scratch_steps = advi["steps_to_scratch_final"], advi["scratch_steps"]
        head = (
            f"{advi['family']} from Pathfinder (Adam({advi['learning_rate']:g})) "
            f"against {advi['family']} from scratch ({advi['reference_library']}, "
            f"final errors {_fmt(advi['reference_mean_error'])}, "
            f"{_fmt(advi['reference_sd_log_ratio'])}): "
        )
        if steps is None:
            lines.append(
                head + f"does not reach them in {len(advi['trace'])} steps "
                f"(ends at {_fmt(advi['mean_error'])}, {_fmt(advi['sd_log_ratio'])})."
            )
            continue
        quarter = steps <= 0.25 * scratch_steps
        lines.append(
            head + f"reaches them in {steps:.0f} steps against {scratch_steps:.0f} "
            "from scratch: "
            + ("at most a quarter." if quarter else "**more than a quarter**.")
        )
    return lines


def _table(row, settings, num_paths):
    out = [
        "| method | mean error | sd log-ratio | k-hat (ESS) | gradient evals | "
        "density evals | CPU seconds | ADVI gradient evals to reach PF-1 / "
        f"PF-{num_paths} errors |\n|---|---|---|---|---|---|---|---|"
    ]
    for key, label in (
        ("pathfinder_1", "Pathfinder, 1 path"),
        ("pathfinder_multi", f"Pathfinder, {num_paths} paths"),
    ):
        p = row[key]
        ess = "" if p.get("ess") is None else f" ({_fmt(p['ess'])})"
        out.append(
            f"| {label} | {_fmt(p['mean_error'])} | {_fmt(p['sd_log_ratio'])} | "
            f"{_fmt(p['khat'])}{ess} | {_fmt(p['gradient_evaluations'])} | "
            f"{_fmt(p['density_evaluations'])} | {_fmt(p['seconds'])} | |"
        )
    for a in row["advi"]:
        start = (
            ""
            if a["start"] == "scratch"
            else f", from Pathfinder, Adam({a['learning_rate']:g})"
        )
        reach = ""
        if a["start"] == "scratch":
            draws = settings.accuracy_draws_per_step
            to = [a["steps_to_pathfinder"], a["steps_to_pathfinder_multi"]]
            reach = " / ".join(
                "not reached" if s is None else _fmt(s * draws) for s in to
            )
        out.append(
            f"| ADVI {a['family']} ({a['library']}{start}) | {_fmt(a['mean_error'])} | "
            f"{_fmt(a['sd_log_ratio'])} | | {_fmt(float(a['gradient_evaluations']))} | | "
            f"{_fmt(a['seconds'])} | {reach} |"
        )
    return out


def render(rows, settings, num_paths):
    out = [
        "# Pathfinder against ADVI on Inference Gym targets\n",
        f"{settings.accuracy_seeds} replicates; ADVI: {settings.accuracy_steps} Adam"
        f"({settings.accuracy_learning_rate}) steps of "
        f"{settings.accuracy_draws_per_step} draws (one gradient evaluation each); "
        "'ours' is `DOUBLY_REPARAMETERIZED` (our `REPARAMETERIZATION` is `tfp.vi`'s "
        f"fit to the bit with the same seed). Pathfinder: library defaults, 1 and "
        f"{num_paths} paths, XLA; one path is judged by its Gaussian's exact "
        "marginals, several by their pooled PSIS-weighted draws (ESS: "
        "`1 / sum w^2`). Errors in the constrained space against the gym's NUTS "
        "ground truth, medians over parameters, then over replicates. 'Reach' "
        "means both errors at most the level.\n",
    ]
    for row in rows:
        if "skipped" in row:
            out.append(f"## {row['target']}\n\nNot run: {row['skipped']}\n")
            continue
        out.append(f"## {row['target']} (d = {row['dim']})\n")
        out += _table(row, settings, num_paths)
        out.append("")
        out += [f"- {line}" for line in verdicts(row, num_paths)]
        out.append("")
    return "\n".join(out)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "result"}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")  # traces of every step: 4 digits suffice
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    settings = dataclasses.replace(
        PRESETS["full"], accuracy_seeds=args.seeds, accuracy_steps=args.steps
    )
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.targets.split(","):
        rows.append(target_rows(name, settings, args.paths))
        (args.out / "pathfinder_vs_advi.json").write_text(
            json.dumps(
                dict(args=vars(args) | dict(out=str(args.out)), rows=_jsonable(rows)),
                separators=(",", ":"),
            )
        )
        (args.out / "pathfinder_vs_advi.md").write_text(
            render(rows, settings, args.paths)
        )
    print(render(rows, settings, args.paths))


if __name__ == "__main__":
    main()
