"""`fit_surrogate_posterior` against `tfp.vi`'s: compile time, step cost, fits.

Bayesian logistic regression (N synthetic rows, D features, mean-field Normal
surrogate, Adam(0.05), sample_size 8), compiled with XLA (`--graph`: without).
Every round runs, in alternating order, a whole fit of `--steps` steps with
each of:

- ours, defaults (the non-finite guard is always on; no progress line);
- ours with the progress line;
- ours with the progress line and checkpoints every `steps // 10` steps;
- `tfp.vi.fit_surrogate_posterior`.

Each call builds a fresh surrogate and optimizer, so each traces and compiles
anew, as a user's first fit does. Compile time dwarfs the steps here and
varies by seconds on a shared machine, so the per-step cost is measured
directly, not as a difference of whole fits: for ours, the steady steps/s of
the progress line (measured after the first chunk, host round trips between
chunks included, so an upper bound of the compiled step's cost); for `tfp.vi`, a second call of its own compiled program
(`tfp.vi.fit_surrogate_posterior` inside `tf.function(jit_compile=True)`,
which is what its `jit_compile=True` builds), timed after a first call that
compiles. Then `compile = whole fit - steps * per-step cost`. Medians over
rounds; the result is a markdown table.

    python benchmarks/fit_vs_tfp.py [--rounds 3] [--steps 1000] [--graph]
"""

import argparse
import contextlib
import io
import re
import statistics
import tempfile
import time

import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators.problems import logistic_regression_data

tfd = tfp.distributions


def problem(num_rows=2000, dim=20, seed=0):
    x, y, _ = logistic_regression_data(num_rows, dim, seed)

    def target_log_prob_fn(weights):
        prior = tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(weights), -1)
        logits = tf.linalg.matvec(x, weights)
        likelihood = tfd.Bernoulli(logits=logits).log_prob(y)
        return prior + tf.reduce_sum(likelihood, -1)

    return target_log_prob_fn, dim


def surrogate(dim):
    return tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(tf.ones(dim), tfp.bijectors.Softplus()),
    )


def timed(fn):
    start = time.perf_counter()
    losses = fn()
    float(losses[-1])
    return time.perf_counter() - start


def ours(target, dim, steps, xla, seed, progress, checkpoints):
    """Whole-fit seconds and, with `progress`, the progress line's steps/s."""
    kwargs = dict(num_steps=steps, sample_size=8, jit_compile=xla, seed=seed)
    args = (target, surrogate(dim), tf.keras.optimizers.Adam(0.05))
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as directory, contextlib.redirect_stderr(err):
        if checkpoints:
            kwargs.update(checkpoint_dir=directory)
        seconds = timed(
            lambda: tve.fit_surrogate_posterior(*args, progress=progress, **kwargs)
        )
    rates = re.findall(r"([0-9.]+) steps/s", err.getvalue())
    return seconds, float(rates[-1]) if rates and not checkpoints else None


def theirs(target, dim, steps, xla, seed):
    """Whole-fit seconds, and steps/s of a second call of the compiled fit."""
    args = (target, surrogate(dim), tf.keras.optimizers.Adam(0.05))
    kwargs = dict(num_steps=steps, sample_size=8, seed=seed)
    seconds = timed(
        lambda: tfp.vi.fit_surrogate_posterior(*args, jit_compile=xla, **kwargs)
    )
    again = tf.function(
        lambda: tfp.vi.fit_surrogate_posterior(*args, **kwargs),
        autograph=False,
        jit_compile=xla,
    )
    timed(again)
    return seconds, steps / timed(again)


def table(rows, steps):
    lines = [
        "| | compile (first call), s | per step, ms | steps/s "
        f"| whole fit of {steps} steps, s | ratio to tfp.vi (whole fit) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = rows["tfp.vi"]["whole"]
    for label, r in rows.items():
        per_step = r.get("per_step")
        compile_time = (
            "" if per_step is None else f"{r['whole'] - steps * per_step:.2f}"
        )
        lines.append(
            f"| {label} | {compile_time} "
            f"| {'' if per_step is None else f'{per_step * 1e3:.3f}'} "
            f"| {'' if per_step is None else f'{1 / per_step:.0f}'} "
            f"| {r['whole']:.2f} | {r['whole'] / reference:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--graph", action="store_true", help="no XLA")
    args = parser.parse_args()
    xla = not args.graph
    target, dim = problem()
    runs = {
        "ours": lambda seed: ours(target, dim, args.steps, xla, seed, False, False),
        "ours + progress": lambda seed: ours(
            target, dim, args.steps, xla, seed, True, False
        ),
        "ours + progress + checkpoints": lambda seed: ours(
            target, dim, args.steps, xla, seed, True, True
        ),
        "tfp.vi": lambda seed: theirs(target, dim, args.steps, xla, seed),
    }
    times = {label: {"whole": [], "rate": []} for label in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for label in order:
            seconds, rate = runs[label]((r, 1))
            times[label]["whole"].append(seconds)
            if rate is not None:
                times[label]["rate"].append(rate)
    rows = {}
    for label, t in times.items():
        rows[label] = {"whole": statistics.median(t["whole"])}
        if t["rate"]:
            rows[label]["per_step"] = 1 / statistics.median(t["rate"])
    mode = "XLA" if xla else "graph (no XLA)"
    print(
        f"\nlogistic regression N=2000 D=20 S=8, Adam(0.05), {mode}; "
        f"medians of {args.rounds} rounds\n"
    )
    print(table(rows, args.steps))


if __name__ == "__main__":
    main()
