"""Step time of our loss against `tfp.vi`'s, timed alternately in one process.

For each problem and estimator, both implementations' loss-and-gradient steps
are compiled with `tf.function(jit_compile=True)`, warmed up, and timed
alternately (ours, theirs, ours, ...) in rounds, so that drift on a shared
machine hits both alike. A row holds the median milliseconds per step of
each and their ratio ours / tfp.vi; `tfp_ms` is None where `tfp.vi` refuses
the configuration (SCORE_FUNCTION with K > 1).

The harness of the report's speed section and of `benchmarks/speed_vs_tfp.py`.
"""

import functools
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import problems
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.stopped_surrogate import stopped_copy
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__all__ = [
    "CONFIGURATIONS",
    "HEADER",
    "format_row",
    "run",
    "time_configuration",
]

# (problem builder, sample_size, importance_sample_size), in the table's order.
CONFIGURATIONS = [
    (functools.partial(problems.gaussian, dim=40), 256, 1),
    (functools.partial(problems.gaussian, dim=40), 32, 16),
    (problems.mlp_decoder, 256, 1),
    (problems.mlp_decoder, 32, 16),
]
WARM_UP_STEPS = 3


def make_step(problem, implementation, estimator, sample_size, k):
    """A compiled `seed -> (loss, gradients)` of `'ours'` or `'tfp.vi'`."""
    sizes = dict(sample_size=sample_size, importance_sample_size=k)

    def loss(seed):
        if implementation == "ours":
            return monte_carlo_variational_loss(
                problem.target_log_prob_fn,
                problem.surrogate,
                gradient_estimator=estimator,
                seed=seed,
                **sizes,
            )
        stopped = None  # tfp.vi's DReG needs a stopped surrogate by hand
        if estimator == GE.DOUBLY_REPARAMETERIZED:
            stopped = stopped_copy(problem.surrogate)
        return tfp.vi.monte_carlo_variational_loss(
            problem.target_log_prob_fn,
            problem.surrogate,
            gradient_estimator=tfp.vi.GradientEstimators[estimator.name],
            stopped_surrogate_posterior=stopped,
            seed=seed,
            **sizes,
        )

    @tf.function(jit_compile=True)
    def step(seed):
        with tf.GradientTape() as tape:
            value = loss(seed)
        return value, tape.gradient(value, problem.variables)

    return step


def time_steps(step, steps, offset):
    """Milliseconds per call of `step` over `steps` calls (seeds from `offset`)."""
    start = time.perf_counter()
    for i in range(steps):
        loss, _ = step(tf.constant([offset + i, 7]))
    loss.numpy()
    return (time.perf_counter() - start) / steps * 1e3


def supported_by_tfp(estimator, k):
    """Whether `tfp.vi` accepts `estimator` at `importance_sample_size = k`."""
    if estimator == GE.SCORE_FUNCTION:
        return k == 1
    if estimator == GE.VIMCO:
        return k > 1
    return True


def time_configuration(problem, estimator, sample_size, k, rounds, steps):
    """One row: median ms per step and compile seconds of ours and tfp.vi's.

    The compile time is that of the first call (tracing, XLA compilation and
    one step); the ratio is that of the median step times.
    """
    ours = make_step(problem, "ours", estimator, sample_size, k)
    theirs = None
    if supported_by_tfp(estimator, k):
        theirs = make_step(problem, "tfp.vi", estimator, sample_size, k)
    # The first call traces and XLA-compiles: its time is the compile time.
    compile_s = [
        None if step is None else time_steps(step, 1, 0) / 1e3
        for step in (ours, theirs)
    ]
    for step in (ours, theirs):
        if step is not None:
            time_steps(step, WARM_UP_STEPS, 1)  # warm up
    ours_ms, theirs_ms = [], []
    for r in range(rounds):
        ours_ms.append(time_steps(ours, steps, r * steps))
        if theirs is not None:
            theirs_ms.append(time_steps(theirs, steps, r * steps))
    row = dict(
        problem=problem.name,
        S=sample_size,
        K=k,
        estimator=estimator.name,
        ours_ms=float(np.median(ours_ms)),
        tfp_ms=float(np.median(theirs_ms)) if theirs_ms else None,
        ours_compile_s=compile_s[0],
        tfp_compile_s=compile_s[1],
    )
    row["ratio"] = row["ours_ms"] / row["tfp_ms"] if row["tfp_ms"] else None
    return row


def run(rounds, steps, max_configs=None, estimators=tuple(GE), on_row=None):
    """Rows of the speed table, one per configuration and estimator.

    Args:
      rounds: alternating timing rounds per row.
      steps: steps per round.
      max_configs: if set, only the first `max_configs` of `CONFIGURATIONS`.
      estimators: the `GradientEstimators` members to time (VIMCO only at
        K > 1).
      on_row: optional callable given each row as soon as it is timed.

    Returns:
      A list of dicts: `problem`, `S`, `K`, `estimator`, `ours_ms`, `tfp_ms`
      (None where tfp.vi refuses), `ours_compile_s`, `tfp_compile_s` (None
      likewise), `ratio` (None likewise).
    """
    rows = []
    for make_problem, sample_size, k in CONFIGURATIONS[:max_configs]:
        problem = make_problem()
        for estimator in estimators:
            if estimator == GE.VIMCO and k == 1:
                continue
            row = time_configuration(problem, estimator, sample_size, k, rounds, steps)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


HEADER = (
    "| problem | S | K | estimator | ours ms | tfp.vi ms | ours/tfp | "
    "ours compile s | tfp.vi compile s |\n|---|---|---|---|---|---|---|---|---|"
)


def format_row(row):
    """A Markdown table row (columns of `HEADER`): both ms, ratio, compile s."""
    tfp_ms = f"{row['tfp_ms']:.2f}" if row["tfp_ms"] else "refused"
    ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
    compiles = [
        f"{row[key]:.1f}" if row.get(key) is not None else "-"
        for key in ("ours_compile_s", "tfp_compile_s")
    ]
    return (
        f"| {row['problem']} | {row['S']} | {row['K']} | {row['estimator']} | "
        f"{row['ours_ms']:.2f} | {tfp_ms} | {ratio} | {compiles[0]} | {compiles[1]} |"
    )
