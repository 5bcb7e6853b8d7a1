"""Pre-image samples: TFP's own samples, and `log q_stop` with its exact gradient.

The reference for the gradient is today's route (`stopped_surrogate`): a
stopped copy's `log_prob` (or gradient-path cancellation for a flow whose
network cannot be copied), differentiated with respect to the samples. In
float64 the two agree to 1e-9 relative; the only difference is the order of
floating-point operations (forward solve then its gradient, against one
transpose solve).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import pre_image
from tfp_vi_estimators.stopped_surrogate import stopped_log_prob_fn

tfd, tfb = tfp.distributions, tfp.bijectors
SEED = (7, 11)


def _full_rank(dtype=np.float64):
    rng = np.random.default_rng(1)
    tril = np.tril(rng.normal(size=(4, 4))) + 3 * np.eye(4)
    return tfd.MultivariateNormalTriL(
        tf.Variable(rng.normal(size=4).astype(dtype)), tf.Variable(tril.astype(dtype))
    )


def _batched_full_rank():
    rng = np.random.default_rng(2)
    tril = np.tril(rng.normal(size=(2, 3, 3))) + 2 * np.eye(3)
    return tfd.MultivariateNormalTriL(
        tf.Variable(rng.normal(size=(2, 3))), tf.Variable(tril)
    )


def _diag():
    return tfd.MultivariateNormalDiag(
        tf.Variable([0.1, -0.3, 0.7], dtype=tf.float64),
        tf.Variable([1.5, 0.4, 0.9], dtype=tf.float64),
    )


def _chain_flow():
    return tfd.TransformedDistribution(
        tfd.Normal(tf.constant(0.0, tf.float64), 1.0),
        tfb.Chain(
            [
                tfb.Shift(tf.Variable(0.4, dtype=tf.float64)),
                tfb.Scale(tf.Variable(1.3, dtype=tf.float64)),
            ]
        ),
    )


def _exp_flow():  # not affine: the general route
    return tfd.TransformedDistribution(
        tfd.Normal(
            tf.Variable(0.2, dtype=tf.float64), tf.Variable(0.7, dtype=tf.float64)
        ),
        tfb.Exp(),
    )


def _maf():
    made = tfb.AutoregressiveNetwork(
        params=2, hidden_units=[8], event_shape=[3], dtype=tf.float64
    )
    made.build([None, 3])
    rng = np.random.default_rng(0)
    for w in made.weights:
        # Keep the autoregressive masks: zero kernels stay zero.
        nonzero = tf.cast(tf.not_equal(w, 0.0), w.dtype) if w.shape.rank == 2 else 1.0
        w.assign(0.3 * rng.standard_normal(w.shape) * nonzero)
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
        tfb.MaskedAutoregressiveFlow(made),
    )


SURROGATES = {
    "full_rank": _full_rank,
    "batched_full_rank": _batched_full_rank,
    "diag": _diag,
    "chain_flow": _chain_flow,
    "exp_flow": _exp_flow,
    "maf": _maf,
}


@pytest.mark.parametrize("name", SURROGATES)
def test_samples_and_log_prob_are_tfps(name):
    q = SURROGATES[name]()
    assert pre_image.has_pre_image(q)
    drawn = pre_image.sample_with_pre_image(q, [5], SEED)
    samples, log_prob = q.experimental_sample_and_log_prob([5], seed=SEED)
    np.testing.assert_array_equal(drawn.samples, samples)
    np.testing.assert_array_equal(drawn.samples, q.sample([5], seed=SEED))
    np.testing.assert_array_equal(drawn.log_prob, log_prob)
    np.testing.assert_array_equal(
        drawn.pre_image, q.distribution.sample([5], seed=SEED)
    )


@pytest.mark.parametrize("name", SURROGATES)
def test_value_and_sample_gradient_match_the_stopped_copy(name):
    q = SURROGATES[name]()
    drawn = pre_image.sample_with_pre_image(q, [6], SEED)
    y = tf.stop_gradient(drawn.samples)
    weights = tf.random.stateless_normal(drawn.log_prob.shape, (1, 2), dtype=y.dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        ours = pre_image.stopped_log_prob_from_pre_image(drawn, y)
        reference = stopped_log_prob_fn(q)(y)
        ours_sum = tf.reduce_sum(weights * ours)
        reference_sum = tf.reduce_sum(weights * reference)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        tape.gradient(ours_sum, y),
        tape.gradient(reference_sum, y),
        rtol=1e-9,
        atol=1e-12,
    )
    # The parameters get nothing through the stopped density.
    for grad in tape.gradient(ours_sum, q.trainable_variables):
        assert grad is None


def test_path_gradient_reaches_the_parameters_through_the_samples():
    """d/dphi log q_stop(T_phi(x)) equals the stopped copy's, through y = T_phi(x)."""
    q = _full_rank()
    with tf.GradientTape(persistent=True) as tape:
        drawn = pre_image.sample_with_pre_image(q, [8], SEED)
        ours = tf.reduce_sum(
            pre_image.stopped_log_prob_from_pre_image(drawn, drawn.samples)
        )
        reference = tf.reduce_sum(stopped_log_prob_fn(q)(drawn.samples))
    for a, b in zip(
        tape.gradient(ours, q.trainable_variables),
        tape.gradient(reference, q.trainable_variables),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_surrogates_without_a_pre_image_here():
    assert not pre_image.has_pre_image(tfd.Normal(0.0, 1.0))
    assert not pre_image.has_pre_image(
        tfd.JointDistributionSequential([tfd.Normal(0.0, 1.0)])
    )
    # The bijector broadcasts the base's batch: the pre-image is smaller.
    broadcast = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Shift([1.0, 2.0]))
    assert not pre_image.has_pre_image(broadcast)
    assert not pre_image.has_pre_image(
        tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.AbsoluteValue())
    )


@pytest.mark.slow
def test_graph_and_xla_agree_with_the_stopped_copy():
    """Under XLA the draws differ from eager ones (XLA's own normal sampler), so
    each mode compares the two routes on its own draws."""
    q = _full_rank(np.float32)

    def both_routes():
        with tf.GradientTape(persistent=True) as tape:
            drawn = pre_image.sample_with_pre_image(q, [4], SEED)
            ours = tf.reduce_sum(
                pre_image.stopped_log_prob_from_pre_image(drawn, drawn.samples)
            )
            reference = tf.reduce_sum(stopped_log_prob_fn(q)(drawn.samples))
        variables = q.trainable_variables
        return (
            [ours, *tape.gradient(ours, variables)],
            [reference, *tape.gradient(reference, variables)],
        )

    for compiled in (
        tf.function(both_routes),
        tf.function(both_routes, jit_compile=True),
    ):
        ours, reference = compiled()
        for a, b in zip(ours, reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
