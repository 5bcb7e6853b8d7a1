"""Automatic stopped surrogates: sticking the landing without building one by hand.

At the optimum (surrogate equal to the target up to a constant) the path
derivative dlog p/dz - dlog q'/dz vanishes for every z, so the
DOUBLY_REPARAMETERIZED gradient must be zero for every kind of surrogate, with
no `stopped_surrogate_posterior` passed. REPARAMETERIZATION's gradient on the
same draws is not zero (its score term remains), which shows each case can
fail.

Where `log q'` is computed by the same ops as the target (a stopped copy's
`log_prob` at z: JointDistributions) the two terms cancel bit for bit and the
gradient is exactly zero. For bijector-transformed surrogates `d log q'/dz` is
read from the sample's pre-image (`_internal/pre_image.py`: a transpose solve
at x, or a vector-Jacobian product) while the target differentiates at z, so
they cancel up to float32 rounding: the test allows `1e-4` times the largest
REPARAMETERIZATION gradient component (float32's machine epsilon 1.2e-7,
amplified by the scale's condition number and the sums over draws and
parameters; observed at most 3e-6 absolute).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import stopped_surrogate

tfd = tfp.distributions
tfb = tfp.bijectors
GE = tve.GradientEstimators
LOG_EVIDENCE = -20.0  # targets are unnormalized, as a real log joint is


def _variables_case():
    loc = tf.Variable([0.5, -1.0])
    scale = tf.Variable([0.8, 1.5])
    q = tfd.MultivariateNormalDiag(loc, scale)
    p = tfd.MultivariateNormalDiag([0.5, -1.0], [0.8, 1.5])
    return q, p.log_prob, [loc, scale]


def _transformed_variable_case():
    loc = tf.Variable([0.5, -1.0, 2.0])
    scale_tril = tfp.util.TransformedVariable(
        [[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [-0.2, 0.1, 1.3]], tfb.FillScaleTriL()
    )
    q = tfd.MultivariateNormalTriL(loc, scale_tril)
    p = tfd.MultivariateNormalTriL(
        tf.stop_gradient(loc), tf.stop_gradient(tf.convert_to_tensor(scale_tril))
    )
    return q, p.log_prob, list(q.trainable_variables)


def _encoder_case():
    x = tf.random.stateless_normal([4, 3], seed=(1, 1))
    encoder = tf.keras.layers.Dense(4)
    out = encoder(x)
    loc, raw_scale = out[:, :2], out[:, 2:]
    q = tfd.MultivariateNormalDiag(loc, tf.nn.softplus(raw_scale))
    p = tfd.MultivariateNormalDiag(
        tf.stop_gradient(loc), tf.stop_gradient(tf.nn.softplus(raw_scale))
    )
    return q, p.log_prob, encoder.trainable_variables, "needs_tape"


def _jd_case(lambdas):
    a, b = tf.Variable(0.4), tf.Variable(1.5)
    s = tfp.util.TransformedVariable(0.7, tfb.Softplus())

    def build(a, b, s):
        if lambdas:
            return tfd.JointDistributionSequential(
                [tfd.Normal(a, s), lambda z0: tfd.Normal(b * z0, 0.5)]
            )
        return tfd.JointDistributionSequential([tfd.Normal(a, s), tfd.Normal(b, 0.5)])

    q = build(a, b, s)
    p = build(0.4, 1.5, 0.7)
    return q, lambda *z: p.log_prob(list(z)), [a, b] + list(s.trainable_variables)


def _flow_case():
    def flow():
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=[8], activation="tanh")
        return made, tfd.TransformedDistribution(
            tfd.Sample(tfd.Normal(0.0, 1.0), [3]),
            tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made),
        )

    made_q, q = flow()
    made_p, p = flow()
    z = q.sample(1, seed=(2, 2))  # builds both networks
    p.log_prob(z)
    for w_p, w_q in zip(made_p.weights, made_q.weights, strict=True):
        w_p.assign(w_q + tf.random.stateless_normal(w_q.shape, seed=(3, 3)) * 0.3)
        w_q.assign(w_p)
    return q, p.log_prob, made_q.trainable_variables


CASES = {
    "variables": _variables_case,
    "transformed_variable": _transformed_variable_case,
    "encoder_tensors": _encoder_case,
    "joint_distribution_copyable": lambda: _jd_case(lambdas=False),
    "joint_distribution_lambdas": lambda: _jd_case(lambdas=True),
    "masked_autoregressive_flow": _flow_case,
}


def _gradients(case, estimator, importance_sample_size):
    with tf.GradientTape(persistent=True) as tape:
        q, target, variables, *_ = CASES[case]()  # encoder output on the tape
        loss = tve.monte_carlo_variational_loss(
            lambda *z: target(*z) + LOG_EVIDENCE,
            q,
            sample_size=8,
            importance_sample_size=importance_sample_size,
            gradient_estimator=estimator,
            seed=(5, 6),
        )
    return [g.numpy() for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("importance_sample_size", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sticking_the_landing_is_zero_at_optimum(case, importance_sample_size):
    path = _gradients(case, GE.DOUBLY_REPARAMETERIZED, importance_sample_size)
    total = _gradients(case, GE.REPARAMETERIZATION, importance_sample_size)
    largest = max(np.abs(g).max() for g in total)
    assert largest > 1e-3
    # Exact where q' and the target share their ops (see the module docstring).
    tolerance = 0.0 if case.startswith("joint_distribution") else 1e-4 * largest
    for g in path:
        np.testing.assert_array_less(np.abs(g), tolerance + 1e-30)


def test_stopped_copy_of_copyable_surrogate():
    q, _, variables = _transformed_variable_case()
    copy = stopped_surrogate.stopped_copy(q)
    z = tf.constant([[0.1, 0.2, 0.3]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        lp_copy = copy.log_prob(z)
        lp = q.log_prob(z)
    np.testing.assert_array_equal(lp_copy, lp)
    assert all(g is None for g in tape.gradient(lp_copy, variables))
    np.testing.assert_allclose(tape.gradient(lp_copy, z), tape.gradient(lp, z))


def test_stopped_copy_refuses_lambdas_and_fallback_stops_parameters():
    q, _, variables = _jd_case(lambdas=True)
    with pytest.raises(ValueError, match="cannot be stopped by copying"):
        stopped_surrogate.stopped_copy(q)
    z = [tf.constant([0.3, -0.1]), tf.constant([0.2, 0.5])]
    log_prob = stopped_surrogate.stopped_log_prob_fn(q)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        lp = log_prob(z)
    np.testing.assert_array_equal(lp, q.log_prob(z))
    for g in tape.gradient(lp, variables, unconnected_gradients="zero"):
        np.testing.assert_array_equal(g, 0.0)
    z_grad = tape.gradient(lp, z)
    assert np.all(np.abs(z_grad[0]) > 0)  # reaches z0 through q(z1 | z0) too
    # A stopped copy built by hand (the same model with constant parameters):
    # the fallback's value and gradient to z must equal its.
    a, b = (tf.constant(v.numpy()) for v in variables[:2])
    scale = tf.constant(q.model[0].scale.numpy())
    reference = tfd.JointDistributionSequential(
        [tfd.Normal(a, scale), lambda z0: tfd.Normal(b * z0, 0.5)]
    )
    with tf.GradientTape() as tape:
        tape.watch(z)
        lp_reference = reference.log_prob(z)
    np.testing.assert_allclose(lp, lp_reference, rtol=1e-6)
    for got, want in zip(z_grad, tape.gradient(lp_reference, z), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_stopped_copy_rejects_non_distribution():
    with pytest.raises(TypeError, match="distribution"):
        stopped_surrogate.stopped_copy(3.0)


def test_given_stopped_surrogate_is_used_as_given():
    q, target, variables = _variables_case()
    elsewhere = tfd.MultivariateNormalDiag([3.0, 3.0], [0.8, 1.5])

    def grads(stopped):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target,
                q,
                sample_size=4,
                gradient_estimator=GE.DOUBLY_REPARAMETERIZED,
                stopped_surrogate_posterior=stopped,
                seed=(1, 2),
            )
        return tape.gradient(loss, variables)

    # Zero up to float32 rounding (pre-image route; module docstring), and far
    # from zero with a stopped copy that is elsewhere.
    assert all(np.all(np.abs(g) < 1e-5) for g in grads(None))
    assert any(np.any(np.abs(g) > 1e-2) for g in grads(elsewhere))
