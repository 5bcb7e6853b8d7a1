"""Whole fits against NumPyro's SVI: fresh processes, alternating rounds.

The problem of `benchmarks/fit_vs_tfp.py`: Bayesian logistic regression on
N=2000 synthetic rows (`problems.logistic_regression_data(2000, 20, 0)`,
numpy, fixed seed), D=20, a mean-field Normal surrogate started at loc 0 and
scale 1 (softplus-parameterized on both sides), Adam(0.05, epsilon 1e-7),
8 draws per step, 1,000 steps, float32 on the CPU.

- **ours**: `tfp_vi_estimators.fit_surrogate_posterior(..., sample_size=8,
  jit_compile=True, progress=False)` with `fit_vs_tfp.problem` and
  `fit_vs_tfp.surrogate`;
- **NumPyro**: `SVI(model, AutoNormal(model, init_loc_fn=init_to_value(w=0),
  init_scale=1), numpyro.optim.Adam(0.05, eps=1e-7),
  Trace_ELBO(num_particles=8)).run(key, 1000, x, y, progress_bar=False)`
  (one `lax.scan` of `SVI.update`); the model is `w ~ N(0, I)`,
  `y ~ Bernoulli(logits=x w)`.

NumPyro and jax are never dependencies of this project: the NumPyro side runs
in a separate interpreter (`--numpyro-python` or the `NUMPYRO_PYTHON`
environment variable, for example a scratch venv made with `python3.11 -m
venv /tmp/numpyro_env && /tmp/numpyro_env/bin/pip install numpyro jax`).
Without one the script says so and exits with status 0.

Every round runs each side once in a fresh process (this file with
`--worker`), in alternating order, so both pay their first trace and
compilation, as a user's first fit in a new session does, and neither
reuses the other's warm caches. The data are written once by a child process
(`problems.logistic_regression_data`) and read by both. A worker times, from
after its imports and data loading:

- `whole`: building the surrogate (guide) and optimizer, tracing, compiling
  and running the 1,000 steps, until the losses are on the host;
- `whole_warm`: the same fit again in the same process (fresh surrogate and
  optimizer): what a second fit in a notebook costs. TensorFlow retraces
  and recompiles it; jax keeps the compiled eager operations of NumPyro's
  `init` but compiles the new `lax.scan` again;
- the compilation: for ours, the time before XLA starts compiling (argument
  checks, tracing) and XLA's compile time, both read from TensorFlow's own
  log (`TF_CPP_VMODULE=device_compiler=2`; the log's timestamps share the
  clock of `time.time()`), and `run`, from the end of the compilation to the
  end of the fit (the 1,000 steps inside the fit and the copy of the
  losses); for NumPyro, jax's monitoring events (tracing to jaxpr, lowering
  to MLIR, backend compile), summed over every compilation in the fit (jax
  runs the steps asynchronously while it compiles the parameters'
  constraint, so its run is not split off);
- `steady`: a second call of an already compiled 1,000-step program, per
  step: the compiled loop alone (ours: `fit_surrogate_posterior` inside
  `tf.function(jit_compile=True)`, which runs `tfp.math.minimize` with our
  loss; NumPyro: `jax.jit` of a `lax.scan` of `SVI.update`). The "first
  call" column is `whole - steps * steady`;
- the fitted loc and scale. The driver evaluates the ELBO of both fits with
  the same 20,000 numpy draws of standard normal noise: the two solve the
  same problem when their ELBOs agree.

Medians over rounds (and the machine's load average) are printed as a
markdown table and, with `--out`, written to `numpyro_vs_ours.{md,json}`.

    NUMPYRO_PYTHON=/tmp/numpyro_env/bin/python \\
        python benchmarks/numpyro_vs_ours.py [--rounds 5] [--steps 1000]
        [--out benchmarks/results/numpyro_vs_ours] [--label 'machine, commit']
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

NUM_ROWS, DIM, SAMPLE_SIZE, LEARNING_RATE, EPSILON = 2000, 20, 8, 0.05, 1e-7
ELBO_DRAWS = 20_000
HERE = os.path.dirname(os.path.abspath(__file__))
# The checkout this file is in (before an installed copy) and its benchmarks.
sys.path[:0] = [os.path.dirname(HERE), HERE]


# Workers: one fit in this (fresh) process, a JSON line on stdout.


def ours_worker(steps, seed):
    started = time.perf_counter()
    import tensorflow as tf
    from fit_vs_tfp import problem, surrogate

    import tfp_vi_estimators as tve

    target, dim = problem(NUM_ROWS, DIM, seed=0)
    imported = time.perf_counter() - started

    options = dict(
        num_steps=steps, sample_size=SAMPLE_SIZE, seed=(seed, 1), progress=False
    )

    def whole_fit():
        clock = time.perf_counter()
        q = surrogate(dim)
        optimizer = tf.keras.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON)
        losses = tve.fit_surrogate_posterior(
            target, q, optimizer, jit_compile=True, **options
        ).numpy()
        return q, losses, time.perf_counter() - clock

    t_start = time.time()
    q, losses, whole = whole_fit()
    t_end = time.time()
    whole_warm = whole_fit()[-1]  # the same fit again in this process
    # Variables and optimizer slots are made outside the compiled function.
    q_again = surrogate(dim)
    optimizer = tf.keras.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON)
    optimizer.build(q_again.trainable_variables)
    compiled = tf.function(
        lambda: tve.fit_surrogate_posterior(target, q_again, optimizer, **options),
        autograph=False,
        jit_compile=True,
    )
    compiled().numpy()
    clock = time.perf_counter()
    compiled().numpy()
    steady = time.perf_counter() - clock
    return dict(
        imported=imported,
        whole=whole,
        whole_warm=whole_warm,
        t_start=t_start,
        t_end=t_end,
        steady=steady / steps,
        loc=q.mean().numpy().tolist(),
        scale=q.stddev().numpy().tolist(),
        last_losses=float(np.mean(losses[-100:])),
    )


def numpyro_worker(steps, seed, data):
    started = time.perf_counter()
    import jax
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.initialization import init_to_value

    with np.load(data) as arrays:
        x, y = arrays["x"], arrays["y"]
    imported = time.perf_counter() - started
    events = {}

    def listen(event, seconds, **_):
        if event.startswith("/jax/core/compile/"):
            name = event.rsplit("/", 1)[-1]
            events.setdefault(name, []).append((seconds, time.time()))

    jax.monitoring.register_event_duration_secs_listener(listen)

    def model(x, y):
        w = numpyro.sample("w", dist.Normal(np.zeros(DIM, np.float32), 1.0).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    def svi():
        guide = AutoNormal(
            model,
            init_loc_fn=init_to_value(values={"w": np.zeros(DIM, np.float32)}),
            init_scale=1.0,
        )
        optimizer = numpyro.optim.Adam(LEARNING_RATE, eps=EPSILON)
        loss = Trace_ELBO(num_particles=SAMPLE_SIZE)
        return SVI(model, guide, optimizer, loss)

    key = jax.random.PRNGKey(seed)
    t_start, clock = time.time(), time.perf_counter()
    result = svi().run(key, steps, x, y, progress_bar=False)
    losses = np.asarray(result.losses)
    whole, t_end = time.perf_counter() - clock, time.time()
    compile_events = {k: list(v) for k, v in events.items()}
    clock = time.perf_counter()
    np.asarray(svi().run(key, steps, x, y, progress_bar=False).losses)
    whole_warm = time.perf_counter() - clock  # the same fit again in this process

    again = svi()
    state = again.init(key, x, y)

    def body(state, _):
        return again.update(state, x, y)

    loop = jax.jit(lambda s: jax.lax.scan(body, s, None, length=steps))
    jax.block_until_ready(loop(state))
    clock = time.perf_counter()
    jax.block_until_ready(loop(state))
    steady = time.perf_counter() - clock
    return dict(
        imported=imported,
        whole=whole,
        whole_warm=whole_warm,
        t_start=t_start,
        t_end=t_end,
        steady=steady / steps,
        events=compile_events,
        loc=np.asarray(result.params["w_auto_loc"]).tolist(),
        scale=np.asarray(result.params["w_auto_scale"]).tolist(),
        last_losses=float(np.mean(losses[-100:])),
        versions=dict(jax=jax.__version__, numpyro=numpyro.__version__),
    )


# Splitting `whole` into before-compile, compile and run.

_TF_LOG = re.compile(r"^[IWE]\d{4} (?:\d+:)*(\d+\.\d+)\s+\d+ (\S+?):\d+\] (.*)$")


def ours_split(record, log):
    """`(before, compile, run)` seconds from TensorFlow's `device_compiler` log."""
    starts, ends, seconds = [], [], []
    for line in log.splitlines():
        match = _TF_LOG.match(line.strip())
        if not match:
            continue
        stamp, source, text = float(match[1]), match[2], match[3]
        if not record["t_start"] <= stamp <= record["t_end"]:
            continue
        if source == "device_compiler.h" and "DeviceCompiler::Compile" in text:
            starts.append(stamp)
        timed = re.search(r"Compilation of XLA executable time: .* \((\d+) us\)", text)
        if timed:
            ends.append(stamp)
            seconds.append(int(timed[1]) / 1e6)
    if not starts or not ends:
        return None
    return (
        starts[0] - record["t_start"],
        sum(seconds),
        record["t_end"] - ends[-1],
    )


def numpyro_split(record):
    """`(trace, lower, compile, None)` seconds from jax's monitoring events,
    summed over every compilation in the fit.

    jax dispatches the compiled steps asynchronously and compiles the
    parameters' constraint while they run, so the run is not split off.
    """
    events = record["events"]

    def total(name):
        return sum(seconds for seconds, _ in events.get(name, []))

    if not events.get("backend_compile_duration"):
        return None
    return (
        total("jaxpr_trace_duration"),
        total("jaxpr_to_mlir_module_duration"),
        total("backend_compile_duration"),
        None,
    )


# The driver.


def elbo(loc, scale, x, y, seed=1):
    """The ELBO of `N(loc, diag(scale^2))`, same draws for every surrogate."""
    loc, scale = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
    eps = np.random.default_rng(seed).standard_normal((ELBO_DRAWS, loc.size))
    w = loc + scale * eps
    logits = w @ x.T.astype(np.float64)
    likelihood = (y * logits - np.logaddexp(0.0, logits)).sum(-1)
    prior = (-0.5 * w**2 - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_q = (-0.5 * eps**2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)
    return float(np.mean(likelihood + prior - log_q))


def spawn(python, side, steps, seed, data):
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="0",
        TF_CPP_VMODULE="device_compiler=2",
    )
    command = [python, os.path.abspath(__file__), "--worker", side]
    command += ["--steps", str(steps), "--seed", str(seed), "--data", data]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{side} worker failed:\n{done.stderr[-3000:]}")
    record = json.loads(lines[-1][len("RESULT ") :])
    record["load"] = os.getloadavg()[0]
    if side == "ours":
        record["split"] = ours_split(record, done.stderr)
    else:
        record["split"] = numpyro_split(record)
    return record


def numpyro_python(given):
    """The NumPyro interpreter, or `None` with the reason printed."""
    python = given or os.environ.get("NUMPYRO_PYTHON")
    if not python:
        print(
            "Skipped: no NumPyro interpreter (pass --numpyro-python or set NUMPYRO_PYTHON)."
        )
        return None
    try:
        check = subprocess.run(
            [python, "-c", "import numpyro, jax"], capture_output=True, text=True
        )
    except OSError as error:
        print(f"Skipped: cannot run the NumPyro interpreter {python!r}: {error}")
        return None
    if check.returncode:
        print(
            f"Skipped: {python!r} cannot import numpyro and jax:\n{check.stderr[-500:]}"
        )
        return None
    return python


def median(records, fn):
    values = [fn(r) for r in records]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def summary(runs, steps, x, y):
    rows = {}
    for side, records in runs.items():
        elbos = [elbo(r["loc"], r["scale"], x, y) for r in records]
        split = [r["split"] for r in records]
        row = dict(
            whole=median(records, lambda r: r["whole"]),
            whole_warm=median(records, lambda r: r["whole_warm"]),
            compile=median(split, lambda s: s and s[-2]),
            before=median(split, lambda s: s and sum(s[:-2])),
            first_call=median(records, lambda r: r["whole"] - steps * r["steady"]),
            run_step=median(split, lambda s: s and s[-1] and s[-1] / steps),
            steady_step=median(records, lambda r: r["steady"]),
            imported=median(records, lambda r: r["imported"]),
            elbo=statistics.median(elbos),
            elbo_spread=max(elbos) - min(elbos),
            last_losses=median(records, lambda r: r["last_losses"]),
            whole_all=[r["whole"] for r in records],
        )
        if side == "numpyro":
            row["trace"] = median(split, lambda s: s and s[0])
            row["lower"] = median(split, lambda s: s and s[1])
        rows[side] = row
    return rows


def table(rows, steps):
    lines = [
        f"| | whole fit of {steps} steps, s | same fit again in the process, s "
        "| first call (whole - steps x per step), s "
        "| before compile (checks, tracing, lowering), s | compile, s "
        "| per step, compiled loop alone, ms | import, s | ELBO (20,000 draws) "
        "| ours / NumPyro (whole fit) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = rows["numpyro"]["whole"]
    for side, r in rows.items():
        lines.append(
            f"| {'ours' if side == 'ours' else 'NumPyro SVI'} | {r['whole']:.2f} "
            f"| {r['whole_warm']:.2f} | {r['first_call']:.2f} "
            f"| {r['before']:.2f} | {r['compile']:.2f} "
            f"| {r['steady_step'] * 1e3:.3f} | {r['imported']:.1f} "
            f"| {r['elbo']:.2f} | {r['whole'] / reference:.2f} |"
        )
    return "\n".join(lines)


def ratios(runs):
    """Per-round ratios ours / NumPyro (the rounds' loads differ)."""
    lines = []
    for key, label in [("whole", "whole fits"), ("whole_warm", "fits again")]:
        values = [
            a[key] / b[key] for a, b in zip(runs["ours"], runs["numpyro"], strict=True)
        ]
        lines.append(
            f"ours / NumPyro per round, {label}: "
            f"{', '.join(f'{v:.2f}' for v in values)} "
            f"(median {statistics.median(values):.2f})"
        )
    return "\n".join(lines)


def rounds(python, args, data):
    runs = {"ours": [], "numpyro": []}
    for r in range(args.rounds):
        order = ["numpyro", "ours"] if r % 2 == 0 else ["ours", "numpyro"]
        for side in order:
            interpreter = python if side == "numpyro" else sys.executable
            record = spawn(interpreter, side, args.steps, r, data)
            runs[side].append(record)
            print(
                f"round {r} {side}: whole {record['whole']:.2f} s, split "
                f"{record['split']}, load {record['load']:.2f}",
                flush=True,
            )
    return runs


def drive(args):
    python = numpyro_python(args.numpyro_python)
    if python is None:
        return
    with tempfile.TemporaryDirectory() as directory:
        data = os.path.join(directory, "data.npz")
        # In a child process, so this one does not hold TensorFlow's memory.
        command = [sys.executable, os.path.abspath(__file__), "--worker", "data"]
        subprocess.run(command + ["--data", data], check=True, capture_output=True)
        with np.load(data) as arrays:
            x, y = arrays["x"], arrays["y"]
        uptime_before = subprocess.run(["uptime"], capture_output=True, text=True)
        runs = rounds(python, args, data)
        uptime_after = subprocess.run(["uptime"], capture_output=True, text=True)
    rows = summary(runs, args.steps, x, y)
    text = (
        f"logistic regression N={NUM_ROWS} D={DIM} S={SAMPLE_SIZE}, Adam(0.05), "
        f"{args.steps} steps, XLA on the CPU; medians of {args.rounds} "
        f"alternating rounds, a fresh process per fit; NumPyro "
        f"{runs['numpyro'][0]['versions']}\n"
        f"{args.label + chr(10) if args.label else ''}"
        f"uptime before: {uptime_before.stdout.strip()}\n"
        f"uptime after: {uptime_after.stdout.strip()}\n\n{table(rows, args.steps)}\n"
        f"\n{ratios(runs)}\n"
        f"ours, per step inside the fit (end of XLA compilation to the end "
        f"of the fit, over {args.steps}): {rows['ours']['run_step'] * 1e3:.3f} ms\n"
    )
    print("\n" + text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "numpyro_vs_ours.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "numpyro_vs_ours.json"), "w") as f:
            json.dump(dict(rows=rows, runs=runs), f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--numpyro-python", help="default: $NUMPYRO_PYTHON")
    parser.add_argument("--out", help="directory for the .md and .json results")
    parser.add_argument("--label", help="a line for the results: machine, commit")
    parser.add_argument(
        "--worker", choices=["ours", "numpyro", "data"], help=argparse.SUPPRESS
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "data":
        from tfp_vi_estimators.problems import logistic_regression_data

        x, y, _ = logistic_regression_data(NUM_ROWS, DIM, 0)  # as fit_vs_tfp.problem
        return np.savez(args.data, x=x, y=y)
    if args.worker == "ours":
        record = ours_worker(args.steps, args.seed)
    elif args.worker == "numpyro":
        record = numpyro_worker(args.steps, args.seed, args.data)
    else:
        return drive(args)
    print("RESULT " + json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
