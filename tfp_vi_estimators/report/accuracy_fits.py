"""The arms of the posterior-accuracy benchmark, and fitting with each.

An *arm* is a way to fit a surrogate: `tfp.vi.fit_surrogate_posterior` with
its defaults, or `tfp_vi_estimators.fit_surrogate_posterior` with a gradient
estimator and options. `ARMS` lists them, one line each; adding an arm is
adding a line (an estimator object is given as a callable that makes a fresh
one per fit, since an estimator may hold state). Every arm draws
`accuracy_draws_per_step` target evaluations per step (`S = draws / K`), so
arms cost the same number of target evaluations.

Each fit runs the `accuracy_seeds` replicates as one batch (the surrogate's
batch shape; the draws of each replicate are independent), so one XLA
compilation serves them all, and records the errors of every replicate at
every step through `trace_fn` (`accuracy_metrics.errors`: exact moments, no
draws). Every fit of ours ends with finite values or stops with the library's
`NonFiniteLossError` at the step that produced it; then each replicate is
refitted on its own (seed `(seed, r)`), so that the replicates that finish are
kept and the others are reported as *diverged at step N*. An option the
library refuses on a batched surrogate but accepts on a single one (RQMC on a
batched `MultivariateNormalTriL`, today) is fitted one replicate at a time,
without a batch shape; it gets no step time (the harness times batches). `tfp.vi` applies
non-finite updates and goes on: its replicates are reported as diverged at
their first non-finite loss or error. No NaN reaches a result.

Step times come from a separate harness, `step_times`: each arm's steps (loss,
gradient and Adam update of the same batch) compiled in one loop and timed in
alternating rounds in the same process, by the process's CPU time, which
other processes on a shared machine hardly change.
"""

import dataclasses
import functools
import time
import typing

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import estimators, psis
from tfp_vi_estimators.estimator_choice import GradientEstimators as GE
from tfp_vi_estimators.fitting import NonFiniteLossError, fit_surrogate_posterior
from tfp_vi_estimators.report import accuracy_metrics
from tfp_vi_estimators.report.accuracy_targets import make_surrogate
from tfp_vi_estimators.variational_loss import (
    check_arguments,
    monte_carlo_variational_loss,
)

__all__ = [
    "ARMS",
    "BASELINE",
    "Arm",
    "FitOutcome",
    "compiled_steps",
    "fit_arm",
    "fit_trace",
    "run_seconds",
    "step_times",
]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to fit.

    Attributes:
      label: the arm's name in tables and in `Settings.accuracy_arms`.
      estimator: for ours, a `GradientEstimators` member, or a callable of no
        arguments returning a fresh estimator object.
      sampling: `'iid'` or `'rqmc'`.
      importance_sample_size: K; `S = draws_per_step / K`.
      library: `'ours'` (`tfp_vi_estimators.fit_surrogate_posterior`) or
        `'tfp.vi'` (`tfp.vi.fit_surrogate_posterior`, its defaults).
    """

    label: str
    estimator: typing.Any = None
    sampling: str = "iid"
    importance_sample_size: int = 1
    library: str = "ours"

    def options(self, draws_per_step):
        """Keyword arguments of the fit and the loss for this arm."""
        sizes = dict(
            sample_size=draws_per_step // self.importance_sample_size,
            importance_sample_size=self.importance_sample_size,
        )
        if self.library == "tfp.vi":
            return sizes
        estimator = self.estimator
        if estimator is not None and not isinstance(estimator, GE):
            estimator = estimator()
        return dict(sizes, gradient_estimator=estimator, sampling=self.sampling)


BASELINE = "tfp.vi"
_DR = estimators.DoublyReparameterized

# The arms, one line each (a table: kept on one line by `fmt: off`).
# fmt: off
ARMS = (
    Arm(BASELINE, library="tfp.vi"),
    Arm("REPARAMETERIZATION", GE.REPARAMETERIZATION),
    Arm("DOUBLY_REPARAMETERIZED", GE.DOUBLY_REPARAMETERIZED),
    Arm("score_weight=0.5", functools.partial(_DR, score_weight=0.5)),
    Arm("score_weight=0.25", functools.partial(_DR, score_weight=0.25)),
    Arm("adaptive", functools.partial(_DR, score_weight="adaptive")),
    Arm("REPARAMETERIZATION rqmc", GE.REPARAMETERIZATION, sampling="rqmc"),
    Arm("DOUBLY_REPARAMETERIZED rqmc", GE.DOUBLY_REPARAMETERIZED, sampling="rqmc"),
    Arm("DOUBLY_REPARAMETERIZED K=4", GE.DOUBLY_REPARAMETERIZED, importance_sample_size=4),
)
# fmt: on

_TRACED = ("loss", "mean_error", "sd_log_ratio")


@dataclasses.dataclass(frozen=True)
class FitOutcome:
    """One arm's fit of every replicate on one target and family.

    Attributes:
      mean_error, sd_log_ratio: float arrays `[steps, seeds]`, the errors
        after each step (row `n - 1` after `n` steps); NaN from a replicate's
        divergence on (internal: never reported).
      diverged_step: per replicate, the step whose loss or error was not
        finite, or None for a replicate that finished.
      khat: per replicate, PSIS k-hat of the fitted surrogate (None where
        diverged, or where k-hat is not finite: too few draws in the tail).
      fit_seconds: wall time of the fit, XLA compilation included.
      one_by_one: whether the replicates were fitted one at a time (after
        the batch stopped at a non-finite step, or unbatched).
      unbatched: whether they were fitted without a batch shape, as the
        library refuses the option on a batched surrogate.
    """

    mean_error: np.ndarray
    sd_log_ratio: np.ndarray
    diverged_step: tuple
    khat: tuple
    fit_seconds: float
    one_by_one: bool = False
    unbatched: bool = False


def refusal(arm, target, surrogate, settings):
    """Why the library refuses `arm` on `surrogate` (its message), or None."""
    if arm.library == "tfp.vi":
        return None
    try:
        check_arguments(
            target.log_prob_fn,
            surrogate,
            **arm.options(settings.accuracy_draws_per_step),
        )
    except (TypeError, ValueError) as error:
        return str(error)
    return None


def fit_arm(target, family, arm, settings, seed, batched=True):
    """Fits `settings.accuracy_seeds` replicates with `arm`: a `FitOutcome`.

    Args:
      target: a `GymTarget`.
      family: a surrogate family of `accuracy_targets.FAMILIES`.
      arm: an `Arm`.
      settings: the report's `Settings` (its `accuracy_` fields).
      seed: `(int, int)`, the same for every arm on a target and family.
      batched: False to fit each replicate alone, without a batch shape (for
        an option the library refuses on a batched surrogate only).
    """
    start = time.perf_counter()
    if not batched:
        return _one_by_one(target, family, arm, settings, seed, start, None)
    surrogate = make_surrogate(family, target.dim, settings.accuracy_seeds, seed)
    try:
        trace = fit_trace(target, surrogate, arm, settings, seed)
    except NonFiniteLossError:
        return _one_by_one(target, family, arm, settings, seed, start, 1)
    diverged = _first_non_finite(trace)
    return FitOutcome(
        trace["mean_error"],
        trace["sd_log_ratio"],
        diverged,
        _khat(target, surrogate, settings, seed, diverged),
        time.perf_counter() - start,
    )


def fit_trace(target, surrogate, arm, settings, seed):
    """Fits `surrogate` with `arm`: `{name: [steps] + batch}` float64 arrays of
    the loss, the standardized mean error and the sd log-ratio after each
    step (`settings.accuracy_steps` Adam steps, its learning rate, XLA per
    `accuracy_jit_compile`).

    Raises:
      NonFiniteLossError: from our fit, at the first non-finite step.
    """

    def trace_fn(traced):
        mean_error, sd_log_ratio = accuracy_metrics.errors(surrogate, target)
        return dict(loss=traced.loss, mean_error=mean_error, sd_log_ratio=sd_log_ratio)

    optimizer = tf.keras.optimizers.Adam(settings.accuracy_learning_rate)
    fit = functools.partial(fit_surrogate_posterior, progress=False)
    if arm.library == "tfp.vi":
        # Without XLA its loop runs eagerly (step by step), as tfp.vi does.
        fit = tfp.vi.fit_surrogate_posterior
    trace = fit(
        target.log_prob_fn,
        surrogate,
        optimizer,
        settings.accuracy_steps,
        trace_fn=trace_fn,
        jit_compile=settings.accuracy_jit_compile,
        seed=seed,
        **arm.options(settings.accuracy_draws_per_step),
    )
    return {name: np.asarray(trace[name], np.float64) for name in _TRACED}


def _first_non_finite(trace):
    """Per replicate, the first step with a non-finite traced value, or None."""
    bad = ~np.all([np.isfinite(trace[name]) for name in _TRACED], axis=0)
    return tuple(int(np.argmax(column)) if column.any() else None for column in bad.T)


def _khat(target, surrogate, settings, seed, diverged):
    """PSIS k-hat of each replicate of the fitted surrogate (None if diverged).

    In a `tf.function`, a replicate whose draws the target cannot score (a
    diverged `tfp.vi` replicate's NaN draws) gets k-hat NaN instead of
    stopping the others' (`psis.psis_smooth`).
    """

    @tf.function(autograph=False)
    def diagnostic():
        return psis.psis_diagnostic(
            target.log_prob_fn,
            surrogate,
            num_draws=settings.accuracy_psis_draws,
            seed=(seed[0] + 7, seed[1]),
        )

    khat = diagnostic().numpy()
    return tuple(
        float(k) if step is None and np.isfinite(k) else None
        for k, step in zip(np.ravel(khat), diverged, strict=True)
    )


def _one_by_one(target, family, arm, settings, seed, start, batch):
    """Refits each replicate alone, seed `(seed[0] + 1000 (r + 1), seed[1])`,
    with batch shape `[batch]` (or none for `batch=None`)."""
    steps = settings.accuracy_steps
    columns, diverged, khat = [], [], []
    for replicate in range(settings.accuracy_seeds):
        replicate_seed = (seed[0] + 1000 * (replicate + 1), seed[1])
        surrogate = make_surrogate(family, target.dim, batch, replicate_seed)
        try:
            trace = fit_trace(target, surrogate, arm, settings, replicate_seed)
        except NonFiniteLossError as error:
            columns.append(np.full((steps, 2), np.nan))
            diverged.append(error.step)
            khat.append(None)
            continue
        trace = {name: np.reshape(trace[name], (steps, 1)) for name in _TRACED}
        columns.append(
            np.concatenate([trace["mean_error"], trace["sd_log_ratio"]], axis=1)
        )
        (step,) = _first_non_finite(trace)
        diverged.append(step)
        khat += _khat(target, surrogate, settings, replicate_seed, (step,))
    stacked = np.stack(columns, axis=1)  # [steps, seeds, 2]
    return FitOutcome(
        stacked[..., 0],
        stacked[..., 1],
        tuple(diverged),
        tuple(khat),
        time.perf_counter() - start,
        one_by_one=True,
        unbatched=batch is None,
    )


def step_times(target, family, arms, settings, seed):
    """Milliseconds per step of each arm, timed alternately in one process.

    Each arm's steps (loss, gradient and Adam update of the same batch of
    `accuracy_seeds` replicates) run in one compiled loop whose length is an
    argument. A first call of one step compiles; a call of
    `_CALIBRATION_STEPS` sets the arm's round length to about
    `accuracy_timing_seconds`; then `accuracy_timing_rounds` rounds call every
    arm in turn, and the median over rounds is kept. The time is the process's
    CPU time (all its threads): on a shared machine, other processes stretch
    wall time by a factor that changes from round to round (two arms with the
    same computation differed 2x in wall time at a load of 16 on 2 cores), but
    hardly the CPU time a step needs. The wall time is kept beside it.

    Returns:
      `{label: dict(step_ms, step_wall_ms, compile_seconds)}`; None for an
      arm whose steps could not be built or run (with `error`, its message).
    """
    runs, times = {}, {}
    for arm in arms:
        try:
            run = _timed_steps(target, family, arm, settings, seed)
            times[arm.label] = dict(compile_seconds=run_seconds(run, 1, 0)[0])
            cpu = run_seconds(run, _CALIBRATION_STEPS, 0)[1] / _CALIBRATION_STEPS
            length = settings.accuracy_timing_seconds / max(cpu, 1e-6)
            runs[arm.label] = (run, int(min(max(length, 1), _MAX_ROUND_STEPS)))
        except Exception as error:  # noqa: BLE001 - reported in the row
            times[arm.label] = dict(compile_seconds=None, error=str(error))
    rounds = {label: [] for label in runs}
    for round_index in range(settings.accuracy_timing_rounds):
        for label, (run, length) in runs.items():
            wall, cpu = run_seconds(run, length, round_index + 1)
            rounds[label].append((cpu / length, wall / length))
    for label, seconds in times.items():
        cpu, wall = (
            np.median(rounds[label], axis=0) if rounds.get(label) else (None, None)
        )
        seconds["step_ms"] = None if cpu is None else float(cpu) * 1e3
        seconds["step_wall_ms"] = None if wall is None else float(wall) * 1e3
    return times


_CALIBRATION_STEPS = 10
_MAX_ROUND_STEPS = 5000


def run_seconds(run, num_steps, offset):
    """`(wall, cpu)` seconds of `run` (from `compiled_steps`) for `num_steps`
    steps, its seed `[offset, 11]`."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(tf.constant([offset, 11], tf.int32), tf.constant(num_steps)).numpy()
    return time.perf_counter() - wall, time.process_time() - cpu


def _timed_steps(target, family, arm, settings, seed):
    """`compiled_steps` of a fresh surrogate of `family` (the fit's start)."""
    surrogate = make_surrogate(family, target.dim, settings.accuracy_seeds, seed)
    return compiled_steps(target, surrogate, arm, settings)


def compiled_steps(target, surrogate, arm, settings):
    """A compiled `(seed, num_steps) -> steps done` of `arm`'s fit steps.

    Each step is the fit's: the arm's loss on `target` (of every replicate of
    `surrogate`'s batch, summed), its gradient and an Adam update
    (`accuracy_learning_rate`), in one `tf.while_loop` whose length is an
    argument, so one compilation (XLA per `accuracy_jit_compile`) serves
    rounds of any length; time it with `run_seconds`. It trains
    `surrogate`'s variables.
    """
    options = arm.options(settings.accuracy_draws_per_step)
    loss_fn = monte_carlo_variational_loss
    if arm.library == "tfp.vi":
        loss_fn = tfp.vi.monte_carlo_variational_loss
    optimizer = tf.keras.optimizers.Adam(settings.accuracy_learning_rate)
    variables = list(surrogate.trainable_variables)
    optimizer.build(variables)

    def step(i, seed):
        step_seed, seed = tfp.random.split_seed(seed)
        with tf.GradientTape() as tape:
            loss = loss_fn(target.log_prob_fn, surrogate, seed=step_seed, **options)
            loss = tf.reduce_sum(loss)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )
        return i + 1, seed

    @tf.function(jit_compile=settings.accuracy_jit_compile or None, autograph=False)
    def run(seed, num_steps):
        return tf.while_loop(lambda i, _: i < num_steps, step, (tf.constant(0), seed))[
            0
        ]

    return run
