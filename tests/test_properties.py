"""Property-based tests over shapes, sizes, sample structures and estimators.

For every combination: the loss has the surrogate's batch shape and is
finite, gradients are finite, and for the same seed every estimator that
draws samples as `[S * K]` gives the same loss value (estimators change
gradients, not losses). VIMCO draws `[K, S]`, as tfp.vi does, so its value is
compared with tfp.vi's VIMCO instead.
"""

import warnings

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st

import tfp_vi_estimators as tve

tfd = tfp.distributions
GE = tve.GradientEstimators


def _surrogate_and_target(structure, batch_shape, event_size):
    event = [event_size] if event_size else []
    shape = batch_shape + event
    loc = tf.Variable(tf.fill(shape, 0.3), name="loc")
    scale = tf.Variable(tf.fill(shape, 0.8), name="scale")

    def part(loc, scale):
        d = tfd.Normal(loc, scale)
        return tfd.Independent(d, 1) if event_size else d

    def log_density(z, mean):
        lp = tfd.Normal(mean, 1.5).log_prob(z)
        return tf.reduce_sum(lp, -1) if event_size else lp

    if structure == "tensor":
        return part(loc, scale), lambda z: log_density(z, 1.0), [loc, scale]
    if structure == "list":
        q = tfd.JointDistributionSequential(
            [part(loc, scale), lambda z0: part(z0 + loc, scale)]
        )
        return q, lambda a, b: log_density(a, 1.0) + log_density(b, a), [loc, scale]
    q = tfd.JointDistributionNamed(
        dict(a=part(loc, scale), b=lambda a: part(a - loc, scale))
    )
    return q, lambda a, b: log_density(a, -1.0) + log_density(b, 0.5 * a), [loc, scale]


@settings(max_examples=25, deadline=None)
@given(
    structure=st.sampled_from(["tensor", "list", "dict"]),
    batch_shape=st.lists(st.integers(1, 3), max_size=2),
    event_size=st.integers(0, 3),
    sample_size=st.integers(1, 4),
    importance_sample_size=st.integers(1, 4),
    seed=st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)),
)
def test_loss_shape_finiteness_and_estimator_invariance(
    structure, batch_shape, event_size, sample_size, importance_sample_size, seed
):
    q, target, variables = _surrogate_and_target(structure, batch_shape, event_size)
    kwargs = dict(
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        seed=seed,
    )
    values = {}
    for estimator in GE:
        if estimator == GE.VIMCO and importance_sample_size < 2:
            continue
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target, q, gradient_estimator=estimator, **kwargs
            )
        assert loss.shape == batch_shape
        assert np.all(np.isfinite(loss))
        for g in tape.gradient(loss, variables):
            assert np.all(np.isfinite(g))
        values[estimator] = loss.numpy()
    if GE.VIMCO in values:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = tfp.vi.monte_carlo_variational_loss(
                target, q, gradient_estimator=tfp.vi.GradientEstimators.VIMCO, **kwargs
            )
        np.testing.assert_allclose(values.pop(GE.VIMCO), theirs, rtol=1e-5, atol=1e-5)
    reference = values.pop(GE.REPARAMETERIZATION)
    for value in values.values():
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-5)
