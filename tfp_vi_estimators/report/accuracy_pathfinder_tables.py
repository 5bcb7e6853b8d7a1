"""The accuracy section's Pathfinder part: tables and verdicts from its rows.

Per target, one table: Pathfinder with each number of paths (errors,
k-hat and effective sample size, gradient and density evaluations, CPU
seconds of a compiled run), then every ADVI arm fitted from scratch (its
final errors, gradient evaluations and CPU seconds, and those it needs to
reach each Pathfinder row's errors), then the fits started from
Pathfinder. Below it, one sentence per Pathfinder row on the paper's claim
and one per fit from Pathfinder on the quarter of the steps (see
`accuracy_pathfinder`).
"""

from tfp_vi_estimators.report.accuracy_pathfinder import CLAIM_FRACTION, CLAIM_RATIO
from tfp_vi_estimators.report.formatting import fmt, markdown_table

__all__ = ["claim_lines", "render_pathfinder", "summarize_pathfinder"]


def _cell(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float) and value == int(value) and abs(value) >= 1:
        return str(int(value))
    return fmt(value, digits)


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return (values[middle] + values[~middle]) / 2


def _header(pathfinder):
    reach = [f"ADVI to reach PF-{p['paths']}: grad evals (CPU s)" for p in pathfinder]
    return [
        "method",
        "mean error",
        "sd log-ratio",
        "k-hat (ESS)",
        "gradient evals",
        "density evals",
        "CPU s",
    ] + reach


def _pathfinder_line(p, width):
    ess = "" if p["ess"] is None else f" ({_cell(p['ess'])})"
    failed = f", {int(p['failed'])} failed" if p["failed"] else ""
    label = f"Pathfinder, {p['paths']} path{'s' if p['paths'] > 1 else ''}{failed}"
    return [
        label,
        _cell(p["mean_error"]),
        _cell(p["sd_log_ratio"]),
        f"{_cell(p['khat'])}{ess}",
        _cell(p["gradient_evaluations"]),
        _cell(p["density_evaluations"]),
        _cell(p["seconds"]),
    ] + [""] * width


def _advi_lines(target, rows, pathfinder, steps, draws):
    lines = []
    for row in rows:
        if row["target"] != target or row["status"] != "fitted":
            continue
        reach = []
        for p in pathfinder:
            (found,) = [
                r
                for r in p["advi_to_reach"]
                if (r["family"], r["arm"]) == (row["family"], row["arm"])
            ]
            reach.append(
                "not reached"
                if found["steps"] is None
                else f"{found['gradient_evaluations']} ({_cell(found['seconds'])})"
            )
        seconds = None if not row.get("step_ms") else steps * row["step_ms"] / 1e3
        lines.append(
            [
                f"ADVI {row['family']}, {row['arm']}",
                _cell(_median([s["mean_error"] for s in row["seeds"]])),
                _cell(_median([s["sd_log_ratio"] for s in row["seeds"]])),
                _cell(_median([s["khat"] for s in row["seeds"]])),
                str(steps * draws),
                "",
                _cell(seconds),
            ]
            + reach
        )
    return lines


def _continued_lines(continued, draws, width):
    lines = []
    for c in continued:
        label = f"ADVI {c['family']}, {c['arm']} from Pathfinder (1 path)"
        if c["diverged_step"] is not None:
            lines.append(
                [label, f"diverged at step {c['diverged_step']}"] + [""] * (5 + width)
            )
            continue
        lines.append(
            [
                label,
                _cell(c["mean_error"]),
                _cell(c["sd_log_ratio"]),
                "",
                str(c["steps"] * draws),
                "",
                _cell(
                    None
                    if not c["reference_step_ms"]
                    else c["steps"] * c["reference_step_ms"] / 1e3
                ),
            ]
            + [""] * width
        )
    return lines


def _ratio(value):
    """`157x`, `1.4x`, `0.13x` (a ratio below one: more evaluations)."""
    return f"{value:.0f}x" if value >= 10 else f"{value:.2g}x"


def claim_lines(p):
    """The paper's claim on one Pathfinder row, in one sentence."""
    claim = p["claim"]
    if claim.get("holds") is None:
        return f"Pathfinder ({p['paths']} paths): no ADVI arm finished to compare with."
    verdict = "**the claim holds**" if claim["holds"] else "**the claim does not hold**"
    return (
        f"Pathfinder ({p['paths']} path{'s' if p['paths'] > 1 else ''}): mean error "
        f"{_cell(p['mean_error'])} against the best ADVI's "
        f"{_cell(claim['best_mean_error'])} ({claim['best_mean_error_by']}), sd "
        f"log-ratio {_cell(p['sd_log_ratio'])} against "
        f"{_cell(claim['best_sd_log_ratio'])} ({claim['best_sd_log_ratio_by']}), "
        f"at {_ratio(claim['fewer_gradient_evaluations'])} fewer gradient "
        f"evaluations (the claim: no worse at >= {CLAIM_RATIO}x fewer): {verdict}."
    )


def _continued_sentence(c):
    head = (
        f"{c['family']} from Pathfinder ({c['arm']}) against {c['reference_arm']} "
        f"from scratch (final errors {_cell(c['reference_mean_error'])}, "
        f"{_cell(c['reference_sd_log_ratio'])}): "
    )
    if c["diverged_step"] is not None:
        return head + f"diverged at step {c['diverged_step']}."
    reached = c["seeds_steps_to_reference"]
    done = sum(s is not None for s in reached)
    if c["steps_to_reference"] is None:
        return head + (
            f"does not reach them in {c['steps']} steps (ends at "
            f"{_cell(c['mean_error'])}, {_cell(c['sd_log_ratio'])})."
        )
    steps, scratch = c["steps_to_reference"], c["reference_steps"]
    text = (
        head
        + f"reaches them in {steps:.0f} steps (median of {done}/{len(reached)} seeds that do)"
    )
    exact = c.get("reference_steps_to_final")
    if exact is not None:
        text += f", from scratch in {exact:.0f} of {c['steps']} steps: "
        quarter = steps <= CLAIM_FRACTION * exact and done == len(reached)
        return text + ("at most a quarter." if quarter else "**more than a quarter**.")
    if scratch is None:
        return (
            text
            + "; the fit from scratch's median curve reaches them at no checkpoint."
        )
    before, at = scratch
    text += f", from scratch in {before + 1} to {at} of {c['steps']} steps: "
    if steps <= CLAIM_FRACTION * (before + 1) and done == len(reached):
        return text + "at most a quarter."
    if steps > CLAIM_FRACTION * at or done < len(reached):
        return text + "**more than a quarter**."
    return text + "undecided at the checkpoints' resolution."


def render_pathfinder(result):
    """The Markdown of the Pathfinder part (empty list without rows)."""
    if not result.pathfinder:
        return []
    parts = [
        "",
        "**Pathfinder beside the arms** (issue 24; Zhang et al. 2022, library "
        "defaults; one path judged by its Gaussian's exact marginals, several "
        "by their pooled PSIS-weighted draws, ESS `1 / sum w^2`; medians over "
        f"{result.seeds} replicates; CPU seconds of a compiled run, XLA "
        f"{'on' if result.pathfinder[0].get('jit_compile') else 'off'}; ADVI's "
        "gradient evaluations to reach Pathfinder's errors are read at its "
        "checkpoints; a fit from Pathfinder uses our `REPARAMETERIZATION`, "
        "`tfp.vi`'s estimator, from each replicate's one-path Gaussian):",
    ]
    for target in dict.fromkeys(p["target"] for p in result.pathfinder):
        mine = [p for p in result.pathfinder if p["target"] == target]
        pf = [p for p in mine if p["kind"] == "pathfinder"]
        continued = [p for p in mine if p["kind"] == "continued"]
        lines = [_pathfinder_line(p, len(pf)) for p in pf]
        lines += _advi_lines(
            target, result.rows, pf, result.steps, result.draws_per_step
        )
        lines += _continued_lines(continued, result.draws_per_step, len(pf))
        parts += ["", f"*{target}*", "", markdown_table(_header(pf), lines), ""]
        parts += [f"- {claim_lines(p)}" for p in pf]
        parts += [f"- {_continued_sentence(c)}" for c in continued]
    return parts


def summarize_pathfinder(result):
    """`(label, text)` lines for the section summary: on how many targets the
    claim holds, per number of paths."""
    out = []
    pf = [p for p in result.pathfinder if p["kind"] == "pathfinder"]
    for paths in dict.fromkeys(p["paths"] for p in pf):
        mine = [
            p for p in pf if p["paths"] == paths and p["claim"].get("holds") is not None
        ]
        held = sum(p["claim"]["holds"] for p in mine)
        out.append(
            (
                f"Pathfinder {paths} path(s): paper's claim",
                f"holds on {held} of {len(mine)} targets",
            )
        )
    return out
