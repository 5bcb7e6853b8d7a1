"""Gradient variance of the Pyro-style distributions against their baselines.

Run as `python benchmarks/variance_distributions.py` (no network; ~1 minute
on 2 CPU cores). Prints two markdown tables:

1. `f(z) = cos(w.z)`, `z ~ N(mu, L L^T)`: per-draw gradient variance (sum of
   per-element variances) of plain reparameterization
   (`tfd.MultivariateNormalTriL`), `OMTMultivariateNormal` and
   `AVFMultivariateNormal` with a control variate trained for 300 and 1000
   Adam steps (64 draws per step), on the same noise
   draws (same seed); `max |z|` is the largest per-element z-score of the mean
   gradient against the closed-form gradient of
   `E f = cos(w.mu) exp(-|L^T w|^2 / 2)`.
2. A 4-state discrete latent `z ~ Categorical(logits)` with `x | z ~ N(a.z, 1)`:
   the gradient of `E_q[log p(x | z)]` with respect to the logits from the score
   function, the Concrete relaxation (`tfd.RelaxedOneHotCategorical`, `f`
   evaluated at the relaxed sample) and `RelaxedOneHotCategoricalStraightThrough`,
   against the exact gradient by enumeration: bias `|mean - exact|` (with the
   norm of its standard error: a bias of the size of the SE is noise) and
   variance.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfp_vi_estimators.distributions import (
    AVFMultivariateNormal,
    OMTMultivariateNormal,
    RelaxedOneHotCategoricalStraightThrough,
)

tfd = tfp.distributions

NUM_DRAWS = 20_000
DTYPE = tf.float64


# --- Part 1: cos(w.z) under a multivariate normal ------------------------------


def cos_problem(d: int, seed: int):
    rng = np.random.default_rng(seed)
    loc = 0.5 * rng.normal(size=d)
    scale = np.tril(0.6 * rng.normal(size=(d, d)), -1) + np.diag(
        rng.uniform(0.5, 1.2, d)
    )
    w = rng.normal(size=d) / np.sqrt(d)
    return (tf.constant(x, DTYPE) for x in (loc, scale, w))


def exact_gradients(loc, scale, w):
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        projected = tf.linalg.matvec(scale, w, adjoint_a=True)
        value = tf.cos(tf.reduce_sum(w * loc)) * tf.exp(
            -0.5 * tf.reduce_sum(projected**2)
        )
    grad_loc, grad_scale = tape.gradient(value, [loc, scale])
    return grad_loc.numpy(), np.tril(grad_scale.numpy())


def per_draw_gradients(make, loc, scale, w, seed):
    """One draw per broadcast copy of the parameters: per-draw estimators."""
    d = loc.shape[-1]
    loc_copies = tf.broadcast_to(loc, [NUM_DRAWS, d])
    scale_copies = tf.broadcast_to(scale, [NUM_DRAWS, d, d])
    with tf.GradientTape() as tape:
        tape.watch([loc_copies, scale_copies])
        z = make(loc_copies, scale_copies).sample(seed=seed)
        value = tf.reduce_sum(tf.cos(tf.linalg.matvec(z, w)))
    grad_loc, grad_scale = tape.gradient(value, [loc_copies, scale_copies])
    return grad_loc.numpy(), np.tril(grad_scale.numpy())


def train_control_var(loc, scale, w, num_steps=300, sample_size=64):
    d = loc.shape[-1]
    init = 0.1 * tf.random.stateless_normal([2, d, d], seed=(0, d), dtype=DTYPE)
    control_var = tf.Variable(init)
    optimizer = tf_keras.optimizers.Adam(0.03)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            z = AVFMultivariateNormal(loc, scale, control_var).sample(
                sample_size, seed=seed
            )
            value = tf.reduce_mean(tf.cos(tf.linalg.matvec(z, w)))
        optimizer.apply_gradients([(tape.gradient(value, control_var), control_var)])

    for i in range(num_steps):
        step(tf.constant([i, 1]))
    return tf.convert_to_tensor(control_var)


def max_abs_z(per_draw, exact):
    mask = exact != 0  # upper triangle of the scale gradient is identically 0
    se = per_draw.std(0, ddof=1) / np.sqrt(per_draw.shape[0])
    return float(np.max(np.abs((per_draw.mean(0) - exact)[mask] / se[mask])))


def normal_table() -> list[str]:
    rows = [
        "| d | estimator | Var grad loc | Var grad scale_tril | scale var / reparam | max abs z vs exact |",
        "|---|---|---|---|---|---|",
    ]
    for d in (3, 10):
        loc, scale, w = cos_problem(d, seed=d)
        exact = exact_gradients(loc, scale, w)
        estimators = {
            "reparameterization (MVNTriL)": tfd.MultivariateNormalTriL,
            "OMT": OMTMultivariateNormal,
        }
        for num_steps in (300, 1000):
            control_var = train_control_var(loc, scale, w, num_steps)
            estimators[f"AVF (trained, {num_steps} Adam steps)"] = (
                lambda m, s, c=control_var: AVFMultivariateNormal(m, s, c)
            )
        baseline = None
        for name, make in estimators.items():
            grads = per_draw_gradients(make, loc, scale, w, seed=(d, 77))
            var_loc, var_scale = (g.var(0).sum() for g in grads)
            baseline = baseline or var_scale
            worst = max(max_abs_z(g, e) for g, e in zip(grads, exact, strict=True))
            rows.append(
                f"| {d} | {name} | {var_loc:.4g} | {var_scale:.4g} | "
                f"{var_scale / baseline:.3f} | {worst:.2f} |"
            )
    return rows


# --- Part 2: a discrete latent with four states --------------------------------

LOGITS = tf.constant([0.5, -0.3, 0.1, 0.8], DTYPE)
MEANS = tf.constant([-1.5, -0.5, 0.5, 1.5], DTYPE)
OBSERVATION = tf.constant(1.0, DTYPE)


def log_likelihood(z):
    """log N(x; a.z, 1), defined on the simplex so relaxed samples can use it."""
    return tfd.Normal(tf.linalg.matvec(z, MEANS), 1.0).log_prob(OBSERVATION)


def exact_discrete_gradient():
    with tf.GradientTape() as tape:
        tape.watch(LOGITS)
        value = tf.reduce_sum(
            tf.nn.softmax(LOGITS) * log_likelihood(tf.eye(4, dtype=DTYPE))
        )
    return tape.gradient(value, LOGITS).numpy()


def per_draw_discrete(estimator, temperature, seed):
    logits = tf.broadcast_to(LOGITS, [NUM_DRAWS, 4])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        if estimator == "score function":
            q = tfd.OneHotCategorical(logits=logits, dtype=DTYPE)
            z = tf.stop_gradient(q.sample(seed=seed))
            surrogate = tf.stop_gradient(log_likelihood(z)) * q.log_prob(z)
        elif estimator == "Concrete (relaxed)":
            z = tfd.RelaxedOneHotCategorical(temperature, logits=logits).sample(
                seed=seed
            )
            surrogate = log_likelihood(z)
        else:
            q = RelaxedOneHotCategoricalStraightThrough(temperature, logits=logits)
            surrogate = log_likelihood(q.sample(seed=seed))
        value = tf.reduce_sum(surrogate)
    return tape.gradient(value, logits).numpy()


def discrete_table() -> list[str]:
    exact = exact_discrete_gradient()
    rows = [
        f"exact gradient by enumeration: {np.array2string(exact, precision=4)}",
        "",
        "| estimator | temperature | bias abs(mean - exact) | SE of mean | Var (trace) | MSE per draw |",
        "|---|---|---|---|---|---|",
    ]
    cases = [("score function", None)] + [
        (name, t)
        for name in ("Concrete (relaxed)", "straight-through (ours)")
        for t in (0.1, 0.5, 1.0)
    ]
    for name, temperature in cases:
        temp = None if temperature is None else tf.constant(temperature, DTYPE)
        grads = per_draw_discrete(name, temp, seed=(3, 14))
        bias = np.linalg.norm(grads.mean(0) - exact)
        se = np.linalg.norm(grads.std(0, ddof=1) / np.sqrt(NUM_DRAWS))
        variance = grads.var(0).sum()
        rows.append(
            f"| {name} | {'-' if temperature is None else temperature} | {bias:.4f} | "
            f"{se:.4f} | {variance:.4f} | {bias**2 + variance:.4f} |"
        )
    return rows


def main() -> None:
    start = time.time()
    print(f"## cos(w.z), z ~ N(mu, L L^T): {NUM_DRAWS} draws, same noise for all\n")
    print("\n".join(normal_table()))
    print(f"\n## Discrete latent (4 states): {NUM_DRAWS} draws\n")
    print("\n".join(discrete_table()))
    print(f"\n(total {time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
