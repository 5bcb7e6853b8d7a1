"""The accuracy section's tables, verdicts and plot, from its rows.

Each cell summarizes one arm's replicates on one target and family: the
median over the replicates that finished, then in parentheses, for our arms,
on how many of the paired replicates (the same seed) it is better than
`tfp.vi` (`3/5`), and for `tfp.vi` the range over its replicates. A replicate
that diverged is counted and shown with its step (`1 diverged at step 340`);
an arm none of whose replicates finished shows `diverged at step N`. Nothing
is ever shown as NaN.

An arm *loses* to `tfp.vi` where its median error is larger and it is better
on at most half of the paired replicates (or where every replicate diverged
and `tfp.vi`'s did not); the *best* arm of a target and family has the
smallest median among the arms all of whose replicates finished.
"""

import numpy as np

from tfp_vi_estimators.report import figures
from tfp_vi_estimators.report.accuracy_fits import BASELINE
from tfp_vi_estimators.report.accuracy_pathfinder_tables import (
    render_pathfinder,
    summarize_pathfinder,
)
from tfp_vi_estimators.report.formatting import fmt, markdown_table

__all__ = [
    "best_arm",
    "losses",
    "metric_cell",
    "paired_wins",
    "plot",
    "render",
    "summarize",
]

# (title, per-replicate values of a row) of the error tables.
_FINAL = {
    "mean_error": lambda row: [s["mean_error"] for s in row["seeds"]],
    "sd_log_ratio": lambda row: [s["sd_log_ratio"] for s in row["seeds"]],
    "khat": lambda row: [s["khat"] for s in row["seeds"]],
}


def _median(values):
    finite = [v for v in values if v is not None]
    return float(np.median(finite)) if finite else None


def paired_wins(values, baseline_values):
    """`(wins, pairs)`: replicates where both finished and `values` is smaller."""
    pairs = [
        (v, b)
        for v, b in zip(values, baseline_values, strict=True)
        if v is not None and b is not None
    ]
    return sum(v < b for v, b in pairs), len(pairs)


def _diverged(row):
    return sorted(
        s["diverged_step"] for s in row["seeds"] if s["diverged_step"] is not None
    )


def metric_cell(values, diverged, baseline_values=None, digits=2):
    """One table cell (see the module docstring); `baseline_values` None for
    `tfp.vi`'s own cell, which shows the range over its replicates."""
    median = _median(values)
    if median is None:
        steps = ", ".join(str(step) for step in diverged)
        return f"diverged at step {steps}" if diverged else "-"
    finite = [v for v in values if v is not None]
    if baseline_values is None:
        notes = [f"{fmt(min(finite), digits)}-{fmt(max(finite), digits)}"]
    else:
        notes = ["{}/{}".format(*paired_wins(values, baseline_values))]
    if diverged:
        steps = ", ".join(str(step) for step in diverged)
        notes.append(f"{len(diverged)} diverged at step {steps}")
    return f"{fmt(median, digits)} ({'; '.join(notes)})"


def _groups(rows):
    """`{(target, family): {arm: row}}` in the rows' order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["target"], row["family"]), {})[row["arm"]] = row
    return groups


def _values(row, key):
    if key.startswith("equal_time_"):
        return row[key]
    return _FINAL[key](row)


def best_arm(arms, key="mean_error"):
    """Label and median of the arm with the smallest median error among those
    all of whose replicates finished (`arms`: `{label: row}`), or None."""
    candidates = {
        label: _median(_values(row, key))
        for label, row in arms.items()
        if row["status"] == "fitted" and not _diverged(row)
    }
    candidates = {k: v for k, v in candidates.items() if v is not None}
    if not candidates:
        return None
    label = min(candidates, key=candidates.get)
    return label, candidates[label]


def losses(rows, key="mean_error"):
    """`(target, family, arm, median, baseline median, wins, pairs)` of every
    arm of ours that loses to `tfp.vi` (see the module docstring)."""
    found = []
    for (target, family), arms in _groups(rows).items():
        baseline = arms.get(BASELINE)
        if baseline is None or baseline["status"] != "fitted":
            continue
        base_values = _values(baseline, key)
        base_median = _median(base_values)
        for label, row in arms.items():
            if label == BASELINE or row["status"] != "fitted":
                continue
            values = _values(row, key)
            median = _median(values)
            wins, pairs = paired_wins(values, base_values)
            lost = (
                base_median is not None
                and median is not None
                and median > base_median
                and 2 * wins <= pairs
            ) or (median is None and base_median is not None)
            if lost:
                found.append((target, family, label, median, base_median, wins, pairs))
    return found


def _table(rows, arms, key, with_best=False):
    header = ["target", "family"] + arms + (["best"] if with_best else [])
    lines = []
    for (target, family), by_arm in _groups(rows).items():
        baseline = by_arm.get(BASELINE)
        base_values = None
        if baseline is not None and baseline["status"] == "fitted":
            base_values = _values(baseline, key)
        cells = [_cell(by_arm.get(label), key, base_values) for label in arms]
        if with_best:
            best = best_arm(by_arm, key)
            cells.append("-" if best is None else f"{best[0]} ({fmt(best[1], 2)})")
        lines.append([target, family] + cells)
    return markdown_table(header, lines)


def _cell(row, key, base_values):
    if row is None:
        return "-"
    if row["status"] == "refused":
        return "refused"
    values = _values(row, key)
    baseline = None if row["arm"] == BASELINE or base_values is None else base_values
    cell = metric_cell(values, _diverged(row), baseline)
    if key.startswith("equal_time_") and _median(values) is not None:
        cell = f"{cell} @{row['equal_time_steps']}"
    return cell


def _cost_table(rows, arms):
    """Step time (ratio to tfp.vi's) and whole-fit seconds per arm."""
    lines = []
    for (target, family), by_arm in _groups(rows).items():
        base = by_arm.get(BASELINE, {}).get("step_ms")
        cells = []
        for label in arms:
            row = by_arm.get(label)
            if row is None or row["status"] != "fitted" or row["step_ms"] is None:
                cells.append(
                    "-" if row is None or row["status"] != "refused" else "refused"
                )
                continue
            ratio = f" (x{row['step_ms'] / base:.2f})" if base else ""
            cells.append(f"{fmt(row['step_ms'], 2)}{ratio}; {row['fit_seconds']:.0f} s")
        lines.append([target, family] + cells)
    return markdown_table(["target", "family"] + arms, lines)


def _arm_labels(rows):
    return list(dict.fromkeys(row["arm"] for row in rows))


def _targets_table(result):
    lines = []
    for t in result.targets:
        if "error" in t:
            lines.append(
                [t["name"], "-", f"not loaded: {t['error'].splitlines()[0][:160]}"]
            )
            continue
        noise = "-" if t["truth_noise"] is None else fmt(t["truth_noise"], 2)
        lines.append([t["name"], str(t["dim"]), noise])
    return markdown_table(
        ["target", "dim", "ground-truth standard error (standardized)"], lines
    )


def _loss_lines(rows, key, what):
    found = losses(rows, key)
    if not found:
        return [f"At {what}, no option of ours loses to `tfp.vi`'s default."]
    lines = [f"At {what}, options of ours that lose to `tfp.vi`'s default:", ""]
    for target, family, label, median, base, wins, pairs in found:
        text = (
            "every replicate diverged"
            if median is None
            else (
                f"{fmt(median, 2)} against {fmt(base, 2)}, better on {wins}/{pairs} seeds"
            )
        )
        lines.append(f"- {target}, {family}: **{label}** ({text})")
    return lines


def _refusals(rows):
    seen = {}
    for row in rows:
        if row["status"] == "refused":
            seen.setdefault((row["arm"], row["message"].split(". ")[0]), []).append(
                f"{row['target']} {row['family']}"
            )
    return [
        f"- **{arm}** refused ({len(where)} fits): {message}."
        for (arm, message), where in seen.items()
    ]


def render(result):
    """The section's Markdown: protocol, targets, the tables and the verdicts."""
    if result.skipped is not None:
        return f"**Skipped.** {result.skipped}"
    rows, arms = list(result.rows), _arm_labels(result.rows)
    parts = [_protocol(result), "", _targets_table(result), ""]
    parts += _equal_steps_parts(rows, arms, result.steps)
    parts += _equal_time_parts(rows, arms, result.steps)
    parts += _notes(rows)
    parts += render_pathfinder(result)
    return "\n".join(parts)


def _equal_steps_parts(rows, arms, steps):
    return [
        f"**Standardized mean error after {steps} steps** (median over seeds; "
        "for our arms, on how many seeds better than `tfp.vi`; for `tfp.vi`, "
        "its range):",
        "",
        _table(rows, arms, "mean_error", with_best=True),
        "",
        *_loss_lines(rows, "mean_error", f"equal steps ({steps})"),
        "",
        f"**sd log-ratio after {steps} steps:**",
        "",
        _table(rows, arms, "sd_log_ratio", with_best=True),
        "",
    ]


def _equal_time_parts(rows, arms, steps):
    return [
        "**Standardized mean error at equal wall time** (each arm after the "
        "steps `@n` it runs in the time the fastest arm takes for all "
        f"{steps}):",
        "",
        _table(rows, arms, "equal_time_mean_error", with_best=True),
        "",
        *_loss_lines(rows, "equal_time_mean_error", "equal wall time"),
        "",
        "**PSIS k-hat of the fitted surrogates** (median over seeds; below "
        "0.5 good, above 0.7 not reliable):",
        "",
        _table(rows, arms, "khat"),
        "",
        "**Cost:** CPU milliseconds per step of the batch of replicates "
        "(XLA, alternating rounds; in parentheses the ratio to `tfp.vi`'s), "
        "and the wall time of the whole fit, compilation included (on a "
        "shared machine: compare within a row):",
        "",
        _cost_table(rows, arms),
    ]


def _notes(rows):
    """The refused arms with the library's reasons, and the unbatched ones."""
    parts = []
    refusals = _refusals(rows)
    if refusals:
        parts += ["", "Arms the library refuses (never silently run another way):", ""]
        parts += refusals
    unbatched = sorted(
        {f"{r['arm']} ({r['family']})" for r in rows if r.get("unbatched")}
    )
    if unbatched:
        parts += [
            "",
            "Fitted one replicate at a time, without a batch shape, as the "
            "library refuses them on a batched surrogate (so no step time and "
            f"no equal-time value): {', '.join(unbatched)}.",
        ]
    return parts


def _protocol(result):
    return (
        f"Each arm fits {result.seeds} replicates (independent draws, one "
        f"batch) for {result.steps} Adam({result.learning_rate}) steps of "
        f"{result.draws_per_step} target evaluations each (S = "
        f"{result.draws_per_step} / K), XLA "
        f"{'on' if result.jit_compile else 'off'}, from the same initial "
        "values and seeds for every arm; the surrogate lives in the "
        "unconstrained space, the errors are measured in the constrained one "
        "against the Inference Gym's ground truth. E_q and sd_q are exact "
        "(Gauss-Hermite quadrature of the Gaussian marginals through the "
        "elementwise bijector: no Monte Carlo error); the ground truth's own "
        "standard error is in the targets table (errors below it are not "
        "resolved). k-hat from "
        f"{result.psis_draws} draws. *Standardized mean error*: median over "
        "parameters of |E_q - E_true| / sd_true; *sd log-ratio*: median of "
        "|log(sd_q / sd_true)|."
    )


def summarize(result):
    """The best arm's count over targets and families, and the losses."""
    if result.skipped is not None:
        return [("skipped", result.skipped.split(":")[0])]
    counts = {}
    groups = _groups(result.rows)
    for arms in groups.values():
        best = best_arm(arms)
        if best is not None:
            counts[best[0]] = counts.get(best[0], 0) + 1
    lost = losses(result.rows)
    return [
        (
            "best arm (mean error)",
            ", ".join(
                f"{label} {k}"
                for label, k in sorted(counts.items(), key=lambda x: -x[1])
            ),
        ),
        (
            "ours losing to tfp.vi",
            f"{len(lost)} arm-target-family cells of "
            f"{sum(len(a) - 1 for a in groups.values())} (equal steps)",
        ),
    ] + summarize_pathfinder(result)


def plot(result, path):
    """Median standardized mean error against steps, log-log, per target and
    family (one panel each), one line per arm."""
    groups = _groups(result.rows)
    targets = list(dict.fromkeys(t for t, _ in groups))
    families = list(dict.fromkeys(f for _, f in groups))
    figure, axes = figures.new_figure(
        ncols=max(1, len(families)), nrows=max(1, len(targets)), width=4.2, height=3.2
    )
    arms = _arm_labels(result.rows)
    colors = {label: f"C{i % 10}" for i, label in enumerate(arms)}
    for (target, family), by_arm in groups.items():
        ax = axes[targets.index(target) * len(families) + families.index(family)]
        for label, row in by_arm.items():
            if row["status"] != "fitted":
                continue
            medians = [_median(values) for values in row["curve_mean_error"]]
            steps = [s for s, m in zip(row["checkpoints"], medians, strict=True) if m]
            ax.plot(steps, [m for m in medians if m], color=colors[label], label=label)
        figures.log_log(ax)
        ax.set_title(f"{target}, {family}", fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("standardized mean error", fontsize=8)
    if groups:
        axes[0].legend(fontsize=6)
    figures.save_figure(figure, path)
