"""Fit a full-rank Gaussian surrogate with randomized quasi-Monte Carlo sampling.

A 10-d correlated Gaussian target; the same Adam loop twice, once with iid
draws and once with `sampling='rqmc'`, both with REPARAMETERIZATION and 16
draws a step. Prints the exact KL(q || p) after each run: with a constant step
size the fit ends in a noise floor set by the gradient variance, which RQMC
lowers. (With DOUBLY_REPARAMETERIZED both reach KL = 0 here: at the optimum
its gradient vanishes for every draw.)

    python examples/qmc_gaussian.py
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve

tfd = tfp.distributions
DIM, STEPS = 10, 300


def fit(target, sampling):
    q = tfd.MultivariateNormalTriL(tf.Variable(tf.zeros(DIM)), tf.Variable(tf.eye(DIM)))
    optimizer = tf.keras.optimizers.Adam(0.05)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target.log_prob,
                q,
                sample_size=16,
                gradient_estimator=tve.GradientEstimators.REPARAMETERIZATION,
                sampling=sampling,
                seed=seed,
            )
        grads = tape.gradient(loss, q.trainable_variables)
        optimizer.apply_gradients(zip(grads, q.trainable_variables, strict=True))
        return loss

    for i in range(STEPS):
        step(tf.constant([0, i]))
    return float(tfd.kl_divergence(q, target))


def main():
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(DIM, DIM)).astype(np.float32) / 3.0
    target = tfd.MultivariateNormalTriL(
        rng.normal(size=DIM).astype(np.float32),
        np.linalg.cholesky(factor @ factor.T + np.eye(DIM, dtype=np.float32)),
    )
    for sampling in ("iid", "rqmc"):
        print(
            f"{sampling}: KL(q || p) after {STEPS} steps = {fit(target, sampling):.4f}"
        )


if __name__ == "__main__":
    main()
