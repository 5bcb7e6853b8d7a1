"""fit_surrogate_posterior: tfp.vi's traces, eagerly, under XLA and in tf.function."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfp_vi_estimators as tve
from tfp_vi_estimators.fitting import fit_surrogate_posterior

tfd = tfp.distributions
tfb = tfp.bijectors
GE = tve.GradientEstimators


@pytest.mark.parametrize("jit_compile", [None, True])
def test_same_loss_trace_as_tfp_vi(jit_compile, problem):
    q_tfp = problem.surrogate()
    expected = tfp.vi.fit_surrogate_posterior(
        problem.target,
        q_tfp,
        tf_keras.optimizers.Adam(0.1),
        30,
        sample_size=2,
        jit_compile=jit_compile,
        seed=problem.seed,
    )
    q = problem.surrogate()
    got = fit_surrogate_posterior(
        problem.target,
        q,
        tf_keras.optimizers.Adam(0.1),
        30,
        sample_size=2,
        jit_compile=jit_compile,
        seed=problem.seed,
        progress=False,
    )
    # Same ops on the same device: the traces agree to the last bit.
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(q.mean(), q_tfp.mean())


def test_same_trace_with_convergence_criterion_and_trace_fn(problem):
    criterion = tfp.optimizer.convergence_criteria.LossNotDecreasing(
        atol=0.01, window_size=5, min_num_steps=10
    )

    def trace_fn(tq):
        return tq.loss, tq.parameters, tq.has_converged, tq.step

    kwargs = dict(convergence_criterion=criterion, trace_fn=trace_fn, seed=problem.seed)
    expected = tfp.vi.fit_surrogate_posterior(
        problem.target, problem.surrogate(), keras.optimizers.Adam(0.1), 200, **kwargs
    )
    got = fit_surrogate_posterior(
        problem.target,
        problem.surrogate(),
        keras.optimizers.Adam(0.1),
        200,
        progress=False,
        **kwargs,
    )
    assert int(expected[3][-1]) < 199  # it did converge early
    for g, e in zip(tf.nest.flatten(got), tf.nest.flatten(expected), strict=True):
        np.testing.assert_array_equal(g, e)


def test_doubly_reparameterized_reaches_the_target_in_10d():
    # Sticking the landing: at q = p the DR gradient is exactly zero, so SGD
    # converges to the target instead of jittering at the Monte Carlo noise
    # floor (KL ~ 1e-6 after 400 steps here; REPARAMETERIZATION stays near 1).
    dims = 10
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dims, dims)).astype(np.float32) / np.sqrt(dims)
    target = tfd.MultivariateNormalTriL(
        loc=rng.normal(size=dims).astype(np.float32),
        scale_tril=np.linalg.cholesky(a @ a.T + 0.5 * np.eye(dims)).astype(np.float32),
    )
    q = tfd.MultivariateNormalTriL(
        loc=tf.Variable(tf.zeros(dims)),
        scale_tril=tfp.util.TransformedVariable(
            tf.eye(dims), tfb.FillScaleTriL(diag_shift=1e-5)
        ),
    )
    fit_surrogate_posterior(
        target.log_prob,
        q,
        keras.optimizers.SGD(0.05),
        500,
        jit_compile=True,
        seed=(17, 42),
        gradient_estimator=GE.DOUBLY_REPARAMETERIZED,
        progress=False,
    )
    kl = float(tfd.kl_divergence(q, target))
    assert kl < 1e-3, kl


def test_inside_tf_function_matches_tfp(problem):
    def fit_in_function(fit):
        q = problem.surrogate()
        optimizer = keras.optimizers.SGD(0.1)
        run = tf.function(
            lambda: fit(problem.target, q, optimizer, 10, seed=problem.seed),
            autograph=False,
        )
        return run()

    np.testing.assert_allclose(
        fit_in_function(fit_surrogate_posterior),
        fit_in_function(tfp.vi.fit_surrogate_posterior),
        rtol=1e-6,
    )


def test_nothing_to_train_is_a_clear_error():
    # A surrogate without variables (tfp.vi fails with "not enough values to
    # unpack"): the error names `trainable_variables`, before any step.
    q = tfp.distributions.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="trainable_variables"):
        tve.fit_surrogate_posterior(
            tfp.distributions.Normal(1.0, 2.0).log_prob,
            q,
            tf.keras.optimizers.Adam(0.1),
            num_steps=3,
            seed=(1, 2),
        )


def test_rqmc_sampling_reaches_the_target_and_draws_other_points():
    """`sampling='rqmc'` reaches the loss: same seed, other draws than iid's
    (a different trace), and the fit still finds a Gaussian target."""
    target = tfd.MultivariateNormalDiag([1.0, -2.0], [0.5, 2.0])

    def fit(sampling):
        q = tfd.MultivariateNormalDiag(
            tf.Variable([0.0, 0.0]),
            tfp.util.TransformedVariable([1.0, 1.0], tfb.Softplus()),
        )
        losses = tve.fit_surrogate_posterior(
            target.log_prob,
            q,
            tf.keras.optimizers.Adam(0.05),
            num_steps=300,
            sample_size=16,
            seed=(1, 2),
            sampling=sampling,
        )
        return losses.numpy(), q

    iid, _ = fit("iid")
    rqmc, q = fit("rqmc")
    assert not np.array_equal(iid, rqmc)
    np.testing.assert_allclose(q.mean(), [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(q.stddev(), [0.5, 2.0], rtol=0.1)


def test_psis_num_draws_reports_khat_and_warns_for_a_poor_surrogate():
    target = tfd.Normal(0.0, 1.0)
    good = tfd.Normal(tf.Variable(0.0), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tve.psis.PSISWarning)
        tve.fit_surrogate_posterior(
            target.log_prob,
            good,
            tf.keras.optimizers.SGD(0.0),
            num_steps=2,
            seed=(1, 2),
            psis_num_draws=2000,
        )
    narrow = tfd.Normal(tf.Variable(0.0), 0.2)  # true k-hat = 1 - 0.2**2 ~ 0.96
    with pytest.warns(tve.psis.PSISWarning):
        tve.fit_surrogate_posterior(
            target.log_prob,
            narrow,
            tf.keras.optimizers.SGD(0.0),
            num_steps=2,
            seed=(1, 2),
            psis_num_draws=2000,
        )
