"""Behaviour shared by OMT and AVF normals: they are MultivariateNormalTriL
in every respect except the backward pass of `sample()`."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

import tfp_vi_estimators
from tfp_vi_estimators.distributions import AVFMultivariateNormal, OMTMultivariateNormal

tfd = tfp.distributions

LOC = np.array([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2]])
SCALE_TRIL = np.array([[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.5, 0.7, 0.6]])


def _omt(loc, scale_tril):
    return OMTMultivariateNormal(loc, scale_tril)


def _avf(loc, scale_tril):
    dtype = tf.convert_to_tensor(loc).dtype
    control_var = tf.random.stateless_normal([2, 2, 3], seed=(4, 2), dtype=dtype) * 0.3
    return AVFMultivariateNormal(loc, scale_tril, control_var)


FACTORIES = pytest.mark.parametrize("make", [_omt, _avf], ids=["OMT", "AVF"])


@FACTORIES
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_samples_densities_and_moments_as_tril(make, dtype):
    loc, scale = tf.constant(LOC, dtype), tf.constant(SCALE_TRIL, dtype)
    ours, reference = make(loc, scale), tfd.MultivariateNormalTriL(loc, scale)
    assert ours.dtype == dtype and ours.batch_shape == [2] and ours.event_shape == [3]
    assert ours.reparameterization_type == tfd.FULLY_REPARAMETERIZED
    sample = ours.sample([5, 4], seed=(1, 2))
    assert sample.shape == [5, 4, 2, 3]
    np.testing.assert_array_equal(sample, reference.sample([5, 4], seed=(1, 2)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        ours.log_prob(sample), reference.log_prob(sample), rtol=rtol
    )
    for method in ("mean", "mode", "covariance", "variance", "stddev", "entropy"):
        np.testing.assert_allclose(
            getattr(ours, method)(),
            getattr(reference, method)(),
            rtol=rtol,
            err_msg=method,
        )
    np.testing.assert_allclose(tfd.kl_divergence(ours, reference), 0.0, atol=1e-5)
    np.testing.assert_allclose(ours.scale.to_dense(), SCALE_TRIL, rtol=rtol)


@FACTORIES
@pytest.mark.parametrize(
    ("loc_shape", "scale_batch", "batch_shape"),
    [([3], [4, 1], [4, 1]), ([2, 3], [4, 1], [4, 2]), ([1, 3], [], [1])],
)
def test_batch_shapes_broadcast_and_gradients_reduce(
    make, loc_shape, scale_batch, batch_shape
):
    loc = tf.zeros(loc_shape, tf.float64)
    scale = tf.broadcast_to(tf.constant(SCALE_TRIL), [*scale_batch, 3, 3])
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        q = make(loc, scale)
        z = q.sample([2, 3], seed=(3, 3))
        value = tf.reduce_sum(tf.sin(z))
    grad_loc, grad_scale = tape.gradient(value, [loc, scale])
    assert q.batch_shape == batch_shape
    assert z.shape == [2, 3, *batch_shape, 3]
    assert grad_loc.shape == loc.shape and grad_scale.shape == scale.shape
    assert np.all(np.isfinite(grad_loc)) and np.all(np.isfinite(grad_scale))


@FACTORIES
def test_loc_gradient_equals_reparameterization(make):
    # Both custom backward passes give loc the plain pathwise gradient sum_n g_n.
    loc, scale = tf.constant(LOC), tf.constant(SCALE_TRIL)
    grads = []
    for build in (make, tfd.MultivariateNormalTriL):
        with tf.GradientTape() as tape:
            tape.watch(loc)
            value = tf.reduce_sum(tf.cos(build(loc, scale).sample(6, seed=(8, 1))))
        grads.append(tape.gradient(value, loc))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


@FACTORIES
def test_copy_parameters_slicing_and_tf_function_argument(make):
    loc, scale = tf.Variable(LOC), tf.Variable(SCALE_TRIL)
    q = make(loc, scale)
    stopped = q.copy(
        loc=tf.stop_gradient(tf.convert_to_tensor(loc)),
        scale_tril=tf.stop_gradient(tf.convert_to_tensor(scale)),
    )
    assert type(stopped) is type(q) and stopped.batch_shape == q.batch_shape
    rebuilt = type(q)(**q.parameters)
    assert rebuilt.batch_shape == [2]
    assert q[1].batch_shape == [] and q[1].sample(seed=(1, 1)).shape == [3]
    assert len(q.trainable_variables) == 2

    @tf.function
    def log_prob_of_sample(dist):
        return dist.log_prob(dist.sample(seed=(5, 5)))

    assert log_prob_of_sample(q).shape == [2]


@FACTORIES
@pytest.mark.parametrize(
    ("loc", "scale_tril", "error", "match"),
    [
        (None, SCALE_TRIL, TypeError, "`loc`.*got None"),
        (
            np.zeros(3, np.int32),
            SCALE_TRIL,
            TypeError,
            "`loc` must have a floating dtype",
        ),
        (0.0, SCALE_TRIL, ValueError, "`loc` must have rank >= 1"),
        (np.zeros(3), np.zeros(3), ValueError, "`scale_tril` must have rank >= 2"),
        (np.zeros(3), np.zeros([3, 2]), ValueError, "must be square"),
        (np.zeros(2), SCALE_TRIL, ValueError, r"event size of `loc` \(2\)"),
        (np.zeros(3, np.float32), SCALE_TRIL, TypeError, "`loc` is float32"),
    ],
)
@mode_parameter
def test_constructor_rejects_bad_arguments(make, loc, scale_tril, error, match, mode):
    def construct():
        if make is _avf:
            return AVFMultivariateNormal(loc, scale_tril, np.zeros([2, 1, 3]))
        return OMTMultivariateNormal(loc, scale_tril)

    assert_raises(mode, construct, error, match)


# --- Inside the library's variational loss -----------------------------------

monte_carlo_variational_loss = tfp_vi_estimators.monte_carlo_variational_loss
GradientEstimators = tfp_vi_estimators.GradientEstimators


REPARAMETERIZATION = GradientEstimators.REPARAMETERIZATION
DOUBLY_REPARAMETERIZED = GradientEstimators.DOUBLY_REPARAMETERIZED


def _loss_cases():
    # Every (class, estimator, mode, stopped copy given or built) combination;
    # XLA compilation costs seconds per case, so the default run keeps a
    # covering subset (each class, estimator and mode at least once) and the
    # rest carry the slow marker.
    fast = {
        ("OMT", REPARAMETERIZATION, "eager", False),
        ("OMT", DOUBLY_REPARAMETERIZED, "eager", False),
        ("OMT", DOUBLY_REPARAMETERIZED, "eager", True),
        ("AVF", REPARAMETERIZATION, "eager", False),
        ("AVF", DOUBLY_REPARAMETERIZED, "eager", False),
        ("AVF", DOUBLY_REPARAMETERIZED, "eager", True),
        ("OMT", REPARAMETERIZATION, "tf_function", False),
        ("AVF", DOUBLY_REPARAMETERIZED, "tf_function", False),
        ("OMT", DOUBLY_REPARAMETERIZED, "xla", False),
        ("AVF", REPARAMETERIZATION, "xla", False),
    }
    for name, make in (("OMT", _omt), ("AVF", _avf)):
        for estimator in (REPARAMETERIZATION, DOUBLY_REPARAMETERIZED):
            for mode in ("eager", "tf_function", "xla"):
                for stop_by_hand in (False, True):
                    key = (name, estimator, mode, stop_by_hand)
                    marks = () if key in fast else (pytest.mark.slow,)
                    case_id = (
                        f"{name}-{estimator.name.lower()}-{mode}-"
                        f"{'given_stopped' if stop_by_hand else 'auto_stopped'}"
                    )
                    yield pytest.param(
                        make, estimator, mode, stop_by_hand, marks=marks, id=case_id
                    )


@pytest.mark.parametrize(("make", "estimator", "mode", "stop_by_hand"), _loss_cases())
def test_inside_monte_carlo_variational_loss(make, estimator, mode, stop_by_hand):
    target = tfd.MultivariateNormalDiag([1.0, -1.0, 0.5], [1.5, 0.7, 1.0])
    loc = tf.Variable(tf.constant(LOC[0], tf.float32))
    scale = tf.Variable(tf.constant(SCALE_TRIL, tf.float32))

    def loss_and_gradients(build):
        with tf.GradientTape() as tape:
            q = build(loc, scale)
            stopped = None
            if stop_by_hand:
                stopped = q.copy(
                    loc=tf.stop_gradient(tf.convert_to_tensor(loc)),
                    scale_tril=tf.stop_gradient(tf.convert_to_tensor(scale)),
                )
            loss = monte_carlo_variational_loss(
                target.log_prob,
                q,
                sample_size=16,
                gradient_estimator=estimator,
                stopped_surrogate_posterior=stopped,
                seed=(6, 6),
            )
        return (loss, *tape.gradient(loss, [loc, scale]))

    def both():
        return loss_and_gradients(make), loss_and_gradients(tfd.MultivariateNormalTriL)

    if mode != "eager":
        both = tf.function(both, jit_compile=mode == "xla")
    (loss, grad_loc, grad_scale), (ref_loss, ref_grad_loc, _) = both()
    # Same seed, same samples: the loss and the loc gradient are those of
    # MultivariateNormalTriL; the scale gradient is a different unbiased one.
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad_loc, ref_grad_loc, rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(grad_scale)) and np.any(grad_scale != 0)


@FACTORIES
def test_upper_triangle_is_ignored_like_tril(make):
    scale = tf.constant(SCALE_TRIL + np.triu(np.full([3, 3], 5.0), 1))
    loc = tf.constant(LOC)
    with tf.GradientTape() as tape:
        tape.watch(scale)
        sample = make(loc, scale).sample(4, seed=(2, 5))
        value = tf.reduce_sum(tf.cos(sample))
    reference = tfd.MultivariateNormalTriL(loc, scale).sample(4, seed=(2, 5))
    np.testing.assert_allclose(sample, reference, rtol=1e-12)
    np.testing.assert_array_equal(np.triu(tape.gradient(value, scale), 1), 0.0)
