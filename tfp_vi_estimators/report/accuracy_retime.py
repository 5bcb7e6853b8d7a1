"""Step times measured again for saved accuracy rows, without fitting again.

For a run whose step times cannot be trusted (timed by wall clock on a
loaded machine), `retime_target` runs the step-time harness
(`accuracy_fits.step_times`) again for the arms of each saved family and
reads each arm's errors at its new equal-time step off the saved curves, by
linear interpolation in log error against log step between the two
checkpoints around it (`interpolate_curve`). Such rows carry
`equal_time_interpolated=True`; the errors at equal steps are unchanged.
"""

import numpy as np

from tfp_vi_estimators.report import accuracy, accuracy_fits, accuracy_targets
from tfp_vi_estimators.report.progress import silent

__all__ = ["interpolate_curve", "retime_target"]


def interpolate_curve(checkpoints, curve, step):
    """Per replicate, the curve's value at `step`, log-log interpolated.

    Args:
      checkpoints: increasing step counts at which `curve` was recorded.
      curve: per checkpoint, a list of per-replicate values (None: diverged).
      step: a step count between the first and the last checkpoint.

    Returns:
      A list of per-replicate values (None where either neighbour is None).
    """
    upper = int(np.searchsorted(checkpoints, step))
    if checkpoints[min(upper, len(checkpoints) - 1)] == step:
        return list(curve[upper])
    lower = upper - 1
    fraction = np.log(step / checkpoints[lower]) / np.log(
        checkpoints[upper] / checkpoints[lower]
    )
    values = []
    for a, b in zip(curve[lower], curve[upper], strict=True):
        if a is None or b is None:
            values.append(None)
        elif a > 0 and b > 0:
            values.append(float(np.exp(np.log(a) + fraction * np.log(b / a))))
        else:
            values.append(float(a + fraction * (b - a)))
    return values


def retime_target(name, rows, settings, progress=silent):
    """The saved `rows` of target `name` with step times measured again and
    their equal-time errors read off their curves (see the module docstring).
    """
    target = accuracy_targets.load_target(name)
    by_family = {}
    for row in rows:
        by_family.setdefault(row["family"], []).append(row)
    retimed = []
    for family, family_rows in by_family.items():
        progress(f"{name}, {family}: step times again")
        retimed += _retimed_family(target, family, family_rows, settings)
    return retimed


def _retimed_family(target, family, rows, settings):
    timed = {r["arm"] for r in rows if r["status"] == "fitted" and r["step_ms"]}
    arms = [arm for arm in accuracy_fits.ARMS if arm.label in timed]
    seed = accuracy.fit_seed(settings.seed, target.name, family)
    times = accuracy_fits.step_times(target, family, arms, settings, seed)
    steps = accuracy.equal_time_steps(times, settings.accuracy_steps)
    retimed = []
    for row in rows:
        if row["arm"] not in steps:
            retimed.append(row)
            continue
        n = steps[row["arm"]]
        retimed.append(
            dict(
                row,
                step_ms=times[row["arm"]]["step_ms"],
                step_wall_ms=times[row["arm"]]["step_wall_ms"],
                equal_time_steps=n,
                equal_time_mean_error=interpolate_curve(
                    row["checkpoints"], row["curve_mean_error"], n
                ),
                equal_time_sd_log_ratio=interpolate_curve(
                    row["checkpoints"], row["curve_sd_log_ratio"], n
                ),
                equal_time_interpolated=True,
            )
        )
    return retimed
