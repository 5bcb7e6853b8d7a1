"""Better posteriors, not only better gradients: accuracy on Inference Gym targets.

Issue 21. For each target with known posterior moments
(`accuracy_targets`), each surrogate family (mean-field, full-rank, TFP's
affine builder) and each arm of `accuracy_fits.ARMS` (`tfp.vi`'s default fit,
and ours with each estimator and option), `accuracy_seeds` replicates are
fitted for `accuracy_steps` Adam steps with the same number of target
evaluations per step. The errors (`accuracy_metrics`: standardized mean
error and sd log-ratio, exact moments of q by quadrature) are recorded after
every step, so they are compared

- at equal steps: after the last step;
- at equal wall time: each arm after the steps it runs in the time the
  fastest arm takes for all of them (`N * t_fastest / t_arm` steps, from the
  alternating step-time harness `accuracy_fits.step_times`; CPU time per
  step, which on an idle machine is the wall time of these small, mostly
  single-threaded steps, and which other processes on a shared one hardly
  change);
- against steps: log-log curves at `accuracy_checkpoints` log-spaced steps.

Summaries are medians over the replicates, with the number of replicates on
which an arm is better than `tfp.vi` on the same seed. A replicate that
diverged is shown as *diverged at step N*, never as a number.

Beside the arms, each target gets Pathfinder's rows (issue 24,
`accuracy_pathfinder`): 1 and 8 paths judged by the same errors, their
gradient evaluations and time against what each arm needs to reach them,
and a fit started from Pathfinder's Gaussian against `tfp.vi`'s from
scratch.

`benchmarks/posterior_accuracy.py` runs the same code from the command line
(the full preset by default) and writes the same tables and plot.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import zlib

import numpy as np
import tensorflow as tf

from tfp_vi_estimators.report import (
    accuracy_fits,
    accuracy_pathfinder,
    accuracy_targets,
)
from tfp_vi_estimators.report.accuracy_tables import plot, render, summarize
from tfp_vi_estimators.report.progress import Progress, silent
from tfp_vi_estimators.report.section import Section

__all__ = [
    "AccuracyResult",
    "checkpoint_steps",
    "compute",
    "family_rows",
    "equal_time_steps",
    "fit_seed",
    "in_child",
    "target_rows",
    "target_rows_in_child",
]


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """Every fit's errors, step times and divergences.

    Attributes:
      steps, seeds, draws_per_step, learning_rate, jit_compile, psis_draws:
        the protocol.
      skipped: why nothing was measured (`inference_gym` missing), or None.
      targets: one dict per target: `name`, and `dim` and `truth_noise`
        (median standardized standard error of the ground truth, None if gym
        gives none) or `error` (why it did not load).
      rows: one dict per target, family and arm (see `family_rows`).
      pathfinder: Pathfinder's rows of every target, and those of fits
        started from it (`accuracy_pathfinder.pathfinder_rows`); empty in a
        run saved before they existed.
    """

    steps: int
    seeds: int
    draws_per_step: int
    learning_rate: float
    jit_compile: bool
    psis_draws: int
    skipped: str | None
    targets: tuple
    rows: tuple
    pathfinder: tuple = ()


def chosen_arms(settings):
    """`accuracy_fits.ARMS`, or those named by `settings.accuracy_arms`."""
    names = settings.accuracy_arms
    if names is None:
        return accuracy_fits.ARMS
    known = {arm.label: arm for arm in accuracy_fits.ARMS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"`accuracy_arms`: unknown {unknown}; choose from {list(known)}."
        )
    return tuple(known[name] for name in names)


def compute(settings, progress=silent, on_rows=None):
    """Fits every target, family and arm: an `AccuracyResult`.

    With several targets each is fitted in a child process of its own
    (`target_rows_in_child`): XLA keeps every program it compiled until its
    process ends, about 50 MB a fit, which a full run of every target would
    otherwise accumulate.

    Args:
      settings: the report's `Settings` (its `accuracy_` fields).
      progress: callable printing one line per step.
      on_rows: optional callable given the result so far after each target
        (the benchmark saves it as it goes).
    """
    chosen_arms(settings)  # bad labels fail here, before any fit
    protocol = dict(
        steps=settings.accuracy_steps,
        seeds=settings.accuracy_seeds,
        draws_per_step=settings.accuracy_draws_per_step,
        learning_rate=settings.accuracy_learning_rate,
        jit_compile=settings.accuracy_jit_compile,
        psis_draws=settings.accuracy_psis_draws,
    )
    try:
        accuracy_targets.load_gym()
    except accuracy_targets.MissingInferenceGym as error:
        progress(f"skipped: {error}")
        return AccuracyResult(**protocol, skipped=str(error), targets=(), rows=())
    names = settings.accuracy_targets or accuracy_targets.TARGET_NAMES
    targets, rows, pathfinder = [], [], []
    for name in names:
        if len(names) > 1:
            progress(f"{name}: fitting in a child process")
            target, target_rows_, pathfinder_ = target_rows_in_child(name, settings)
        else:
            target, target_rows_, pathfinder_ = target_rows(name, settings, progress)
        targets.append(target)
        rows += target_rows_
        pathfinder += pathfinder_
        result = AccuracyResult(
            **protocol,
            skipped=None,
            targets=tuple(targets),
            rows=tuple(rows),
            pathfinder=tuple(pathfinder),
        )
        if on_rows is not None:
            on_rows(result)
    return result


def target_rows(name, settings, progress=silent):
    """`(description, rows, pathfinder rows)` of the gym target `name`: every
    family and arm, then Pathfinder beside them
    (`accuracy_pathfinder.pathfinder_rows`)."""
    description = []
    target = _loaded(name, description, progress)
    rows = []
    for family in settings.accuracy_families:
        if target is None or not accuracy_targets.family_applies(
            family, target.dim, settings.accuracy_max_full_rank_dim
        ):
            continue
        seed = fit_seed(settings.seed, name, family)
        rows += family_rows(
            target, family, chosen_arms(settings), settings, seed, progress
        )
    if target is None:
        return description[0], rows, []
    pathfinder = accuracy_pathfinder.pathfinder_rows(target, rows, settings, progress)
    return description[0], rows, pathfinder


def target_rows_in_child(name, settings):
    """`target_rows(name, settings)` in a new process (see `in_child`)."""
    return in_child(target_rows, name, settings)


def in_child(function, *args):
    """`function(*args, progress)` in a new process (spawned: a fresh
    TensorFlow, whose compiled programs go with it), printing its progress
    lines itself. `function` and `args` must be picklable."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_in_child, function, *args).result()


def _in_child(function, *args):
    import warnings

    warnings.simplefilter("ignore")
    tf.get_logger().setLevel("ERROR")
    progress = Progress()
    progress.section = NAME
    return function(*args, progress)


def fit_seed(seed, target_name, family):
    """The seed of every arm's fit of `target_name` with `family`: the same
    whichever targets and families a run chooses (numbered by their places in
    `TARGET_NAMES` and `FAMILIES`; another name by its CRC-32)."""
    names = accuracy_targets.TARGET_NAMES
    number = (
        names.index(target_name)
        if target_name in names
        else zlib.crc32(target_name.encode()) % 1_000_000
    )
    return (seed, 100 * number + accuracy_targets.FAMILIES.index(family))


def _loaded(name, targets, progress):
    """The `GymTarget` `name` (its description appended to `targets`), or None."""
    try:
        target = accuracy_targets.load_target(name)
    except ValueError as error:
        progress(f"{name}: not loaded: {error}")
        targets.append(dict(name=name, error=str(error)))
        return None
    targets.append(dict(name=name, dim=target.dim, truth_noise=target.truth_noise()))
    return target


def checkpoint_steps(steps, count):
    """About `count` log-spaced step counts from 1 to `steps` (both included)."""
    return [int(n) for n in np.unique(np.round(np.geomspace(1, steps, count)))]


def family_rows(target, family, arms, settings, seed, progress=silent):
    """Fits `target` with `family` by every arm: one row (a dict) per arm.

    A fitted arm's row: `target`, `family`, `arm`, `status` ('fitted'),
    `one_by_one`, `unbatched` (see `accuracy_fits.fit_arm`), `seeds` (per
    replicate: `diverged_step`, `mean_error`, `sd_log_ratio`, `khat`; None
    where diverged), `checkpoints` and
    `curve_mean_error`, `curve_sd_log_ratio` (per checkpoint, per replicate),
    `equal_time_steps` and `equal_time_mean_error`, `equal_time_sd_log_ratio`
    (per replicate), `fit_seconds`, `step_ms` (CPU), `step_wall_ms`,
    `compile_seconds`, `steps_to_final` (see `_steps_to_final`). A refused
    arm's: `status` 'refused' and `message`.
    """
    outcomes, refused = {}, {}
    for arm in arms:
        batched, reason = _accepted(target, family, arm, settings, seed)
        if reason is not None:
            refused[arm.label] = reason
            continue
        progress(f"{target.name}, {family}: fitting with {arm.label}")
        outcomes[arm.label] = accuracy_fits.fit_arm(
            target, family, arm, settings, seed, batched
        )
    fitted = [
        a for a in arms if a.label in outcomes and not outcomes[a.label].unbatched
    ]
    progress(f"{target.name}, {family}: step times of {len(fitted)} arms")
    times = accuracy_fits.step_times(target, family, fitted, settings, seed)
    equal_steps = equal_time_steps(times, settings.accuracy_steps)
    head = dict(target=target.name, family=family)
    return [
        dict(head, arm=arm.label, status="refused", message=refused[arm.label])
        if arm.label in refused
        else dict(
            head,
            arm=arm.label,
            **_fitted_row(
                outcomes[arm.label],
                times.get(arm.label, {}),
                equal_steps.get(arm.label),
                settings,
            ),
        )
        for arm in arms
    ]


def _accepted(target, family, arm, settings, seed):
    """`(batched, refusal)`: whether the library accepts `arm` on the batch of
    replicates (else on one surrogate without a batch shape), or its refusal."""
    batch = accuracy_targets.make_surrogate(
        family, target.dim, settings.accuracy_seeds, seed
    )
    reason = accuracy_fits.refusal(arm, target, batch, settings)
    if reason is None:
        return True, None
    single = accuracy_targets.make_surrogate(family, target.dim, None, seed)
    if accuracy_fits.refusal(arm, target, single, settings) is None:
        return False, None
    return False, reason


def equal_time_steps(times, steps):
    """`{label: steps}` each arm runs in the time the fastest takes for `steps`."""
    known = {label: t["step_ms"] for label, t in times.items() if t["step_ms"]}
    if not known:
        return {}
    fastest = min(known.values())
    return {
        label: int(min(steps, max(1, np.floor(steps * fastest / ms))))
        for label, ms in known.items()
    }


def _fitted_row(outcome, times, equal_steps, settings):
    """The numbers of a fitted arm's row (JSON values: no NaN).

    `equal_steps` is the arm's step count at equal wall time (None without a
    step time).
    """
    checkpoints = checkpoint_steps(
        settings.accuracy_steps, settings.accuracy_checkpoints
    )
    finished = [step is None for step in outcome.diverged_step]
    at_equal_time = [None] * len(finished)
    if equal_steps is not None:
        (at_equal_time,) = _rows_at(outcome.mean_error, [equal_steps], finished)
        (sd_equal_time,) = _rows_at(outcome.sd_log_ratio, [equal_steps], finished)
    return dict(
        status="fitted",
        one_by_one=outcome.one_by_one,
        unbatched=outcome.unbatched,
        seeds=[
            dict(
                diverged_step=step,
                mean_error=_value(outcome.mean_error[-1, r], finished[r]),
                sd_log_ratio=_value(outcome.sd_log_ratio[-1, r], finished[r]),
                khat=outcome.khat[r],
            )
            for r, step in enumerate(outcome.diverged_step)
        ],
        checkpoints=checkpoints,
        curve_mean_error=_rows_at(outcome.mean_error, checkpoints, finished),
        curve_sd_log_ratio=_rows_at(outcome.sd_log_ratio, checkpoints, finished),
        equal_time_steps=equal_steps,
        equal_time_mean_error=at_equal_time,
        equal_time_sd_log_ratio=(
            sd_equal_time if equal_steps is not None else [None] * len(finished)
        ),
        fit_seconds=float(outcome.fit_seconds),
        step_ms=times.get("step_ms"),
        step_wall_ms=times.get("step_wall_ms"),
        compile_seconds=times.get("compile_seconds"),
        steps_to_final=_steps_to_final(outcome, finished),
    )


def _steps_to_final(outcome, finished):
    """Median over the finished replicates of the first step at which both
    errors are at most their medians after the last step (None if none
    finished): the steps this arm needs to reach its own final errors, which
    a fit started elsewhere is compared with (`accuracy_pathfinder`)."""
    done = [r for r, f in enumerate(finished) if f]
    if not done:
        return None
    mean_error = outcome.mean_error[:, done]
    sd_log_ratio = outcome.sd_log_ratio[:, done]
    reached = accuracy_pathfinder.steps_to_reach(
        mean_error,
        sd_log_ratio,
        np.median(mean_error[-1]),
        np.median(sd_log_ratio[-1]),
    )
    reached = [step for step in reached if step is not None]
    return float(np.median(reached)) if reached else None


def _value(value, finished):
    """A finished replicate's finite value as a float; None otherwise."""
    return float(value) if finished and np.isfinite(value) else None


def _rows_at(values, steps, finished):
    """`values[n - 1]` per step count `n`, per replicate (None if diverged)."""
    return [
        [_value(v, f) for v, f in zip(values[n - 1], finished, strict=True)]
        for n in steps
    ]


NAME = "accuracy"
TITLE = "Better posteriors: accuracy on Inference Gym targets with known answers"
SECTION = Section(
    NAME, TITLE, compute, render, summarize, plot, "error against steps, log-log"
)
