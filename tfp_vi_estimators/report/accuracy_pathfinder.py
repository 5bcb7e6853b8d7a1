"""Pathfinder in the accuracy benchmark: its rows beside the ADVI arms (issue 24).

For each target, Pathfinder (`tfp_vi_estimators.pathfinder`, library
defaults) runs with each number of paths of `accuracy_pathfinder_paths`,
`accuracy_seeds` replicates (one run each, from uniform `(-2, 2)^d` starts;
one compilation serves them). It is judged by the accuracy metrics of the
ADVI arms (`accuracy_metrics`), in the constrained space:

- one path by its Gaussian's exact marginals (quadrature, as the arms);
- several paths by their pooled draws with PSIS weights (the algorithm's
  output: weighted moments; `1 / sum w^2` is their effective sample size).

Cost: gradient evaluations (L-BFGS value-and-gradient calls of all paths;
the ELBO estimates and draws evaluate the density without a gradient and
are counted apart), and the CPU and wall time of a compiled run. Against
each ADVI arm fitted from scratch on the same target (rows of
`accuracy.family_rows`): the gradient evaluations and CPU time that arm
needs to reach Pathfinder's errors (both at most Pathfinder's median,
read off the median curves at the arm's checkpoints: a step count at
checkpoint resolution), and whether the paper's claim holds: Pathfinder's
errors no worse than the best final ADVI errors at ten times fewer
gradient evaluations.

*A fit started from Pathfinder*: for the mean-field and full-rank
families, our fit with `CONTINUATION_ARM` (`REPARAMETERIZATION`, the
estimator of `tfp.vi`'s default fit) from each replicate's one-path
Gaussian, against `tfp.vi`'s fit from scratch (the `BASELINE` arm): the
steps it takes to reach the final errors of the fit from scratch (both
metrics, at most their medians; the median over the replicates that
reach them), against the steps the fit from scratch takes to reach them
(its row's `steps_to_final`, the same median; in rows saved before that
field existed, between two of its checkpoints). TFP's affine
builder initializes itself, so the affine family has no such row.
"""

import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import low_rank
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.fitting import NonFiniteLossError
from tfp_vi_estimators.pathfinding import pathfinder
from tfp_vi_estimators.report import accuracy_fits, accuracy_metrics
from tfp_vi_estimators.report.progress import silent

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "CONTINUATION_ARM",
    "CONTINUED_FAMILIES",
    "family_at",
    "initial_from",
    "pathfinder_errors",
    "pathfinder_rows",
    "pathfinder_runs",
    "steps_to_reach",
    "summary",
]

CONTINUATION_ARM = accuracy_fits.Arm("REPARAMETERIZATION", GE.REPARAMETERIZATION)
CONTINUED_FAMILIES = ("mean-field", "full-rank")
# The paper's claim: no worse errors at this many times fewer gradient
# evaluations; a fit from Pathfinder within this fraction of the steps.
CLAIM_RATIO = 10
CLAIM_FRACTION = 0.25


def pathfinder_errors(result, target, num_paths):
    """`(standardized mean error, sd log-ratio)` of a Pathfinder result: the
    Gaussian's exact marginals for one path, the PSIS-weighted pooled draws
    for several."""
    if num_paths == 1:
        return tuple(
            float(e) for e in accuracy_metrics.errors(result.distribution, target)
        )
    weights = tf.cast(tf.reshape(tf.exp(result.log_weights), [-1, 1]), tf.float64)
    x = target.bijector.forward(tf.reshape(result.path_draws, [-1, target.dim]))
    x = tf.cast(x, tf.float64)
    mean = tf.reduce_sum(weights * x, axis=0)
    sd = tf.sqrt(tf.reduce_sum(weights * tf.square(x - mean), axis=0))
    return (
        float(
            accuracy_metrics.standardized_mean_error(
                mean, target.true_mean, target.true_sd
            )
        ),
        float(accuracy_metrics.sd_log_ratio(sd, target.true_sd)),
    )


def _effective_sample_size(result, num_paths):
    """`1 / sum w^2` of the pooled PSIS weights (several paths); None for one."""
    if num_paths == 1:
        return None
    weights = tf.exp(tf.cast(tf.reshape(result.log_weights, [-1]), tf.float64))
    weights /= tf.reduce_sum(weights)
    return float(1.0 / tf.reduce_sum(tf.square(weights)))


def pathfinder_runs(target, num_paths, seeds, jit_compile=True):
    """`seeds` Pathfinder runs of `num_paths` paths on `target`, one compiled
    program: a list of dicts, one per replicate (`result`: the
    `PathfinderResult`; times in seconds, CPU of the process and wall)."""
    run = tf.function(
        lambda starts, seed: pathfinder(target.log_prob_fn, starts, seed=seed),
        jit_compile=jit_compile or None,
        autograph=False,
    )
    shape = [target.dim] if num_paths == 1 else [num_paths, target.dim]

    def timed(replicate):
        starts = tf.random.stateless_uniform(shape, (replicate, 77), -2.0, 2.0)
        wall, cpu = time.perf_counter(), time.process_time()
        result = run(starts, tf.constant([replicate, 1]))
        result.pareto_k.numpy()
        return result, time.process_time() - cpu, time.perf_counter() - wall

    compile_seconds = timed(0)[2]
    runs = []
    for replicate in range(seeds):
        result, cpu, wall = timed(replicate)
        mean_error, sd_log_ratio = pathfinder_errors(result, target, num_paths)
        runs.append(
            dict(
                mean_error=mean_error,
                sd_log_ratio=sd_log_ratio,
                khat=float(result.pareto_k),
                ess=_effective_sample_size(result, num_paths),
                gradient_evaluations=num_paths * int(result.num_gradient_evaluations),
                density_evaluations=int(np.sum(result.num_target_evaluations)),
                iterations=np.ravel(result.num_iterations).tolist(),
                failed=int(np.sum(result.failed)),
                seconds=cpu,
                wall_seconds=wall,
                compile_seconds=compile_seconds,
                result=result,
            )
        )
    return runs


_SUMMED = (
    "mean_error",
    "sd_log_ratio",
    "khat",
    "gradient_evaluations",
    "density_evaluations",
    "seconds",
    "wall_seconds",
    "compile_seconds",
    "failed",
)


def summary(runs):
    """Medians over the replicates of `pathfinder_runs` (JSON values), with
    the per-replicate errors and iteration counts."""
    out = {key: float(np.median([r[key] for r in runs])) for key in _SUMMED}
    out["ess"] = None
    if runs[0]["ess"] is not None:
        out["ess"] = float(np.median([r["ess"] for r in runs]))
    out["seeds_mean_error"] = [r["mean_error"] for r in runs]
    out["seeds_sd_log_ratio"] = [r["sd_log_ratio"] for r in runs]
    out["iterations"] = [r["iterations"] for r in runs]
    return out


def initial_from(runs, rank):
    """Stacked `(loc, diag, u, v)` of the one-path Gaussians of `runs`, the
    low-rank factor padded to `rank` columns (zeros in U, small random columns
    in V, so that both get gradients) or cut to its first `rank`."""
    parts = []
    for run in runs:
        q = run["result"].distribution
        u, v = q.scale.u, q.scale.v
        extra = rank - u.shape[-1]
        if extra > 0:
            u = tf.pad(u, [[0, 0], [0, extra]])
            noise = tf.random.stateless_normal([v.shape[0], extra], (3, 4))
            v = tf.concat([v, noise / np.sqrt(v.shape[0])], axis=-1)
        parts.append((q.loc, q.scale.base_operator.diag, u[:, :rank], v[:, :rank]))
    return tuple(tf.stack(p) for p in zip(*parts, strict=True))


def family_at(family, initial):
    """A surrogate of the accuracy benchmark's `family` ('mean-field' or
    'full-rank', built as `accuracy_targets.make_surrogate` builds them) whose
    variables start at `initial = (loc, diag, u, v)`, Gaussians
    `N(loc, A A^T)`, `A = diag + U V^T`, with a leading batch dimension:
    the marginal sds for mean-field, `chol(A A^T)` for full-rank."""
    loc, diag, u, v = initial
    scale = low_rank.diag_plus_low_rank(diag, u, v)
    if family == "mean-field":
        sd = tf.sqrt(low_rank.marginal_variance(scale))
        return tfd.Independent(
            tfd.Normal(
                tf.Variable(loc, name="loc"),
                tfp.util.TransformedVariable(sd, tfb.Softplus(), name="scale"),
            ),
            1,
        )
    if family != "full-rank":
        raise ValueError(
            f"`family` must be one of {CONTINUED_FAMILIES}; got {family!r}."
        )
    covariance = scale.matmul(scale.to_dense(), adjoint_arg=True)
    return tfd.MultivariateNormalTriL(
        tf.Variable(loc, name="loc"),
        tfp.util.TransformedVariable(
            tf.linalg.cholesky(covariance),
            tfb.FillScaleTriL(diag_shift=tf.constant(1e-5, loc.dtype)),
            name="scale_tril",
        ),
    )


def steps_to_reach(mean_error, sd_log_ratio, level, sd_level):
    """Per replicate (columns of `[steps, seeds]` traces), the first step
    (1-based) at which both errors are at most the levels, or None. Both: on
    a target whose posterior mean is the start's (IllConditionedGaussian:
    mean 0, loc 0) the mean error alone is reached at step 1 and says
    nothing."""
    reached = (np.asarray(mean_error) <= level) & (np.asarray(sd_log_ratio) <= sd_level)
    return [int(np.argmax(col)) + 1 if col.any() else None for col in reached.T]


def _median_or_none(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(values)) if values else None


def _curve_medians(row, key):
    return [_median_or_none(values) for values in row[key]]


def _checkpoint_reach(row, level, sd_level):
    """`(before, at)`: the checkpoints around the first one at which the
    arm's median curves are both at most the levels (`before` 0 at the first
    checkpoint), or None where none is."""
    means = _curve_medians(row, "curve_mean_error")
    sds = _curve_medians(row, "curve_sd_log_ratio")
    checkpoints = row["checkpoints"]
    for i, (m, s) in enumerate(zip(means, sds, strict=True)):
        if m is not None and s is not None and m <= level and s <= sd_level:
            return (checkpoints[i - 1] if i else 0), checkpoints[i]
    return None


def _scratch_rows(rows):
    return [r for r in rows if r["status"] == "fitted"]


def _final(row, key):
    return _median_or_none([s[key] for s in row["seeds"]])


def _against_advi(summary_, rows, settings):
    """Per ADVI arm fitted from scratch: gradient evaluations and CPU seconds
    to reach Pathfinder's median errors (None: not within its steps)."""
    reach = []
    for row in _scratch_rows(rows):
        found = _checkpoint_reach(row, summary_["mean_error"], summary_["sd_log_ratio"])
        steps = None if found is None else found[1]
        reach.append(
            dict(
                family=row["family"],
                arm=row["arm"],
                steps=steps,
                gradient_evaluations=(
                    None if steps is None else steps * settings.accuracy_draws_per_step
                ),
                seconds=(
                    None
                    if steps is None or not row.get("step_ms")
                    else steps * row["step_ms"] / 1e3
                ),
            )
        )
    return reach


def _claim(summary_, rows, settings):
    """The best final ADVI errors (each metric's best over arms and families
    whose replicates all finished) and whether Pathfinder's are no worse at
    `CLAIM_RATIO` times fewer gradient evaluations."""
    finals = [
        (r, _final(r, "mean_error"), _final(r, "sd_log_ratio"))
        for r in _scratch_rows(rows)
        if all(s["diverged_step"] is None for s in r["seeds"])
    ]
    if not finals:
        return dict(holds=None)
    best_mean = min(finals, key=lambda f: f[1])
    best_sd = min(finals, key=lambda f: f[2])
    advi_evaluations = settings.accuracy_steps * settings.accuracy_draws_per_step
    ratio = advi_evaluations / max(summary_["gradient_evaluations"], 1.0)
    return dict(
        best_mean_error=best_mean[1],
        best_mean_error_by=f"{best_mean[0]['family']} {best_mean[0]['arm']}",
        best_sd_log_ratio=best_sd[2],
        best_sd_log_ratio_by=f"{best_sd[0]['family']} {best_sd[0]['arm']}",
        fewer_gradient_evaluations=ratio,
        holds=bool(
            summary_["mean_error"] <= best_mean[1]
            and summary_["sd_log_ratio"] <= best_sd[2]
            and ratio >= CLAIM_RATIO
        ),
    )


def pathfinder_rows(target, rows, settings, progress=silent):
    """Pathfinder's rows of `target`, given the ADVI arms' `rows` of it (see
    the module docstring): one per number of paths (`kind` 'pathfinder'), and
    one per continued family (`kind` 'continued')."""
    out, one_path = [], None
    for num_paths in settings.accuracy_pathfinder_paths:
        progress(f"{target.name}: Pathfinder, {num_paths} path(s)")
        runs = pathfinder_runs(
            target,
            num_paths,
            settings.accuracy_seeds,
            settings.accuracy_pathfinder_jit_compile,
        )
        one_path = runs if num_paths == 1 else one_path
        s = summary(runs)
        out.append(
            dict(
                kind="pathfinder",
                target=target.name,
                paths=num_paths,
                jit_compile=settings.accuracy_pathfinder_jit_compile,
                **s,
                advi_to_reach=_against_advi(s, rows, settings),
                claim=_claim(s, rows, settings),
            )
        )
    if one_path is None:
        return out
    for family in CONTINUED_FAMILIES:
        reference = [
            r
            for r in rows
            if r["family"] == family
            and r["arm"] == accuracy_fits.BASELINE
            and r["status"] == "fitted"
        ]
        if reference:
            progress(f"{target.name}, {family}: a fit from Pathfinder")
            out.append(_continued(target, family, one_path, reference[0], settings))
    return out


def _continued(target, family, one_path, reference, settings):
    """Our fit from the one-path Gaussians against `reference` (`tfp.vi`'s
    fit of `family` from scratch): steps to reach its final errors."""
    level, sd_level = _final(reference, "mean_error"), _final(reference, "sd_log_ratio")
    surrogate = family_at(family, initial_from(one_path, min(target.dim, 12)))
    seed = (settings.seed, 2400 + CONTINUED_FAMILIES.index(family))
    head = dict(
        kind="continued",
        target=target.name,
        family=family,
        arm=CONTINUATION_ARM.label,
        reference_arm=reference["arm"],
        reference_mean_error=level,
        reference_sd_log_ratio=sd_level,
        reference_steps=(
            None if level is None else _checkpoint_reach(reference, level, sd_level)
        ),
        reference_steps_to_final=reference.get("steps_to_final"),
        steps=settings.accuracy_steps,
        reference_step_ms=reference.get("step_ms"),
        pathfinder_seconds=float(np.median([r["seconds"] for r in one_path])),
    )
    try:
        trace = accuracy_fits.fit_trace(
            target, surrogate, CONTINUATION_ARM, settings, seed
        )
    except NonFiniteLossError as error:
        return dict(head, diverged_step=error.step)
    mean_error, sd_log_ratio = trace["mean_error"], trace["sd_log_ratio"]
    reached = (
        [None] * mean_error.shape[1]
        if level is None
        else steps_to_reach(mean_error, sd_log_ratio, level, sd_level)
    )
    return dict(
        head,
        diverged_step=None,
        start_mean_error=_median_or_none(mean_error[0].tolist()),
        mean_error=_median_or_none(mean_error[-1].tolist()),
        sd_log_ratio=_median_or_none(sd_log_ratio[-1].tolist()),
        seeds_steps_to_reference=reached,
        steps_to_reference=_median_or_none(reached),
    )
