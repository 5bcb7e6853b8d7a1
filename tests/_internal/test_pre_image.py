"""Pre-image samples: TFP's own samples, and `log q_stop` with its exact gradient.

Joint surrogates (`JointDistribution*` with transformed parts, and TFP's
factored builder, a transformed joint base) are held to the same reference.

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

import tfp_vi_estimators as tve
from tfp_vi_estimators._internal import pre_image
from tfp_vi_estimators.stopped_surrogate import stopped_copy, stopped_log_prob_fn

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


def _joint_parts():
    """A full-rank Gaussian, a log-normal (both transformed) and a plain part."""
    rng = np.random.default_rng(3)
    tril = np.tril(rng.normal(size=(3, 3))) * 0.3 + np.eye(3)
    return dict(
        a=tfd.MultivariateNormalTriL(
            tf.Variable([0.0, 1.0, 0.3], dtype=tf.float64), tf.Variable(tril)
        ),
        b=tfd.LogNormal(
            tf.Variable(0.1, dtype=tf.float64), tf.Variable(0.8, dtype=tf.float64)
        ),
        c=tfd.Independent(
            tfd.Normal(
                tf.Variable([0.5, -0.2], dtype=tf.float64),
                tf.Variable([1.1, 0.6], dtype=tf.float64),
            ),
            1,
        ),
    )


def _joint_named():
    return tfd.JointDistributionNamed(_joint_parts())


def _joint_sequential():
    parts = _joint_parts()
    return tfd.JointDistributionSequential([parts["a"], parts["b"], parts["c"]])


def _joint_coroutine():
    parts = _joint_parts()

    def model():
        for name in "abc":
            yield tfd.JointDistributionCoroutine.Root(parts[name])

    return tfd.JointDistributionCoroutine(model)


def _joint_dependent():
    """`b` depends on `a`: no per-part route; the stopped copy is used."""
    parts = _joint_parts()
    return tfd.JointDistributionSequential(
        [parts["a"], lambda a: tfd.LogNormal(tf.reduce_mean(a, -1), 0.5)]
    )


def _factored():
    """TFP's builder for a structured event: a JointMap over a joint base."""
    return tfp.experimental.vi.build_factored_surrogate_posterior(
        event_shape={"a": [2], "b": []},
        bijector={"a": tfb.Softplus(), "b": tfb.Exp()},
        dtype=tf.float64,
    )


JOINT_SURROGATES = {
    "named": _joint_named,
    "sequential": _joint_sequential,
    "coroutine": _joint_coroutine,
    "dependent": _joint_dependent,
    "factored": _factored,
}


@pytest.mark.parametrize("name", JOINT_SURROGATES)
def test_joint_samples_and_log_prob_are_tfps(name):
    q = JOINT_SURROGATES[name]()
    assert pre_image.has_pre_image(q)
    drawn = pre_image.sample_with_pre_image(q, [5], SEED)
    samples, log_prob = q.experimental_sample_and_log_prob([5], seed=SEED)
    for ours, theirs in zip(
        tf.nest.flatten(drawn.samples), tf.nest.flatten(samples), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(drawn.log_prob, log_prob)


@pytest.mark.parametrize("name", JOINT_SURROGATES)
def test_joint_value_and_sample_gradient_match_the_stopped_copy(name):
    """Same tolerance as the plain surrogates above (float64, 1e-9)."""
    q = JOINT_SURROGATES[name]()
    drawn = pre_image.sample_with_pre_image(q, [6], SEED)
    y = tf.nest.map_structure(tf.stop_gradient, drawn.samples)
    weights = tf.random.stateless_normal([6], (1, 2), dtype=tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        ours = pre_image.stopped_log_prob_from_pre_image(drawn, y, stopped_log_prob_fn)
        reference = stopped_log_prob_fn(q)(y)
        ours_sum = tf.reduce_sum(weights * ours)
        reference_sum = tf.reduce_sum(weights * reference)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
    for a, b in zip(
        tf.nest.flatten(tape.gradient(ours_sum, y)),
        tf.nest.flatten(tape.gradient(reference_sum, y)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # Nothing reaches the parameters (the dependent surrogate's stopped copy
    # cancels its parameter gradients, to rounding of float64 terms of order 1).
    for grad in tape.gradient(ours_sum, q.trainable_variables):
        if grad is not None:
            np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_joint_parts_keep_their_pre_images_when_independent():
    drawn = pre_image.sample_with_pre_image(_joint_named(), [2], SEED)
    assert drawn.independent
    kinds = sorted(type(part).__name__ for part in drawn.parts)
    assert kinds == ["Independent", "PreImageSample", "PreImageSample"]
    assert not pre_image.sample_with_pre_image(
        _joint_dependent(), [2], SEED
    ).independent


def test_joint_surrogates_without_a_pre_image_here():
    # No transformed part: the whole surrogate's stopped copy is as cheap.
    assert not pre_image.has_pre_image(
        tfd.JointDistributionNamed(dict(a=tfd.Normal(0.0, 1.0)))
    )

    # Drawn under vectorized_map: which part depends on which is not known.
    @tfd.JointDistributionCoroutineAutoBatched
    def vectorized():
        yield tfd.LogNormal(0.0, 1.0, name="a")

    assert not pre_image.has_pre_image(vectorized)


def _joint_target(a, b, c):
    """A target that couples the parts (so every path gradient matters)."""
    return (
        -0.5 * tf.reduce_sum((a - 0.3) ** 2, -1)
        + tfd.Gamma(tf.constant(2.0, tf.float64), 1.0).log_prob(b)
        - 0.5 * tf.reduce_sum(c**2, -1)
        + 0.1 * tf.reduce_sum(a, -1) * tf.reduce_sum(c, -1)
    )


@pytest.mark.parametrize("sampling", ["iid", "rqmc"])
@pytest.mark.parametrize("importance_sample_size", [1, 3])
def test_joint_doubly_reparameterized_equals_the_stopped_copy_route(
    sampling, importance_sample_size
):
    """DOUBLY_REPARAMETERIZED through the parts' pre-images against a stopped
    copy passed by hand: same draws, same loss and gradients. Both are float64
    sums of the same terms in other orders (parts against the joint, transpose
    solves against forward solves on a 3x3 scale of condition number below
    10), so they agree to a few hundred ulps: rtol = 1e-12 (4500 eps)."""
    q = _joint_named()

    def loss_and_gradients(stopped):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                _joint_target,
                q,
                sample_size=4,
                importance_sample_size=importance_sample_size,
                gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
                stopped_surrogate_posterior=stopped,
                sampling=sampling,
                seed=(3, 4),
            )
        return [loss, *tape.gradient(loss, q.trainable_variables)]

    ours = loss_and_gradients(None)
    reference = loss_and_gradients(stopped_copy(q))
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(b)))
