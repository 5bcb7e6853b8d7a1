"""log_marginal_likelihood against the closed form of a conjugate Gaussian model.

Model: z ~ N(0, I_d), x | z ~ N(z, s^2 I_d), so p(x) = N(x; 0, (1 + s^2) I_d)
and the posterior is N(x / (1 + s^2), s^2 / (1 + s^2) I_d). With the exact
posterior as proposal every importance weight equals p(x), so the estimate is
exact for any number of samples and any chunking (which also checks that each
sample is counted once). With a mismatched proposal, exp(estimate) is an
unbiased estimate of p(x): its mean over independent replicates must be within
`Z_TOLERANCE` standard errors of the closed form.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE

from tfp_vi_estimators.marginal_likelihood import log_marginal_likelihood

tfd = tfp.distributions

DIM = 3
NOISE = 0.7
X = np.array([0.4, -1.1, 0.9])


def _target(dtype=tf.float64):
    x = tf.constant(X, dtype)

    def target_log_prob(z):
        prior = tfd.Normal(tf.constant(0.0, dtype), 1.0).log_prob(z)
        likelihood = tfd.Normal(z, tf.constant(NOISE, dtype)).log_prob(x)
        return tf.reduce_sum(prior + likelihood, axis=-1)

    return target_log_prob


def _exact_log_evidence():
    return float(
        tf.reduce_sum(tfd.Normal(0.0, np.sqrt(1.0 + NOISE**2)).log_prob(X)).numpy()
    )


def _posterior(batch=(), dtype=tf.float64):
    shrink = 1.0 / (1.0 + NOISE**2)
    loc = tf.broadcast_to(tf.constant(X * shrink, dtype), list(batch) + [DIM])
    return tfd.MultivariateNormalDiag(
        loc, tf.fill([DIM], tf.constant(np.sqrt(NOISE**2 * shrink), dtype))
    )


@pytest.mark.parametrize(
    "num_samples,chunk_size", [(1, 1000), (10, 3), (12, 4), (100, 1000), (257, 64)]
)
def test_exact_with_the_exact_posterior(num_samples, chunk_size):
    got = log_marginal_likelihood(
        _target(), _posterior(), num_samples, chunk_size=chunk_size, seed=(1, 2)
    )
    np.testing.assert_allclose(got, _exact_log_evidence(), rtol=1e-12)


@pytest.mark.parametrize("chunk_size", [2000, 300])
def test_unbiased_evidence_with_a_mismatched_proposal(chunk_size):
    # A batch of independent replicates of a wider, shifted proposal.
    replicates = 400
    proposal = tfd.MultivariateNormalDiag(
        tf.fill([replicates, DIM], tf.constant(0.3, tf.float64)),
        tf.fill([DIM], tf.constant(1.0, tf.float64)),
    )
    got = log_marginal_likelihood(
        _target(), proposal, 2000, chunk_size=chunk_size, seed=(3, 4)
    ).numpy()
    assert got.shape == (replicates,)
    ratio = np.exp(got - _exact_log_evidence())  # unbiased for 1
    z = (ratio.mean() - 1.0) / (ratio.std(ddof=1) / np.sqrt(replicates))
    assert abs(z) < Z_TOLERANCE, z
    assert np.all(np.abs(got - _exact_log_evidence()) < 0.2), got


def test_more_samples_tighten_the_bound():
    proposal = tfd.MultivariateNormalDiag(
        tf.zeros([200, DIM], tf.float64), tf.ones([DIM], tf.float64)
    )
    gaps = [
        _exact_log_evidence()
        - log_marginal_likelihood(_target(), proposal, n, seed=(5, 6)).numpy().mean()
        for n in (1, 10, 1000)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > -0.01, gaps


def test_same_seed_same_value_and_seed_matters():
    proposal = tfd.MultivariateNormalDiag(
        tf.zeros([DIM], tf.float64), tf.ones([DIM], tf.float64)
    )

    def estimate(seed):
        return log_marginal_likelihood(
            _target(), proposal, 50, chunk_size=7, seed=seed
        ).numpy()

    assert estimate((1, 1)) == estimate((1, 1))
    assert estimate((1, 1)) != estimate((1, 2))


def test_tf_function_matches_eager():
    proposal = tfd.MultivariateNormalDiag(
        tf.zeros([4, DIM], tf.float64), tf.ones([DIM], tf.float64)
    )

    def estimate():
        return log_marginal_likelihood(
            _target(), proposal, 100, chunk_size=30, seed=(7, 8)
        )

    np.testing.assert_allclose(
        tf.function(estimate, autograph=False)(), estimate(), rtol=1e-10
    )


def test_xla():
    # XLA draws other random numbers for the same stateless seed than the
    # TensorFlow kernels, so compare with the closed form instead.
    @tf.function(jit_compile=True)
    def estimates():
        exact = log_marginal_likelihood(
            _target(), _posterior([2]), 100, chunk_size=30, seed=(7, 8)
        )
        proposal = tfd.MultivariateNormalDiag(
            tf.zeros([DIM], tf.float64), tf.ones([DIM], tf.float64)
        )
        return exact, log_marginal_likelihood(_target(), proposal, 3000, seed=(1, 1))

    exact, approximate = estimates()
    np.testing.assert_allclose(exact, [_exact_log_evidence()] * 2, rtol=1e-12)
    assert abs(approximate - _exact_log_evidence()) < 0.1


def test_float32_and_structured_surrogate():
    # A JointDistribution proposal: the target gets the parts as keywords.
    shrink = 1.0 / (1.0 + NOISE**2)
    scale = np.float32(np.sqrt(NOISE**2 * shrink))
    proposal = tfd.JointDistributionNamed(
        dict(
            a=tfd.Normal(np.float32(X[0] * shrink), scale),
            b=tfd.Normal(np.float32(X[1] * shrink), scale),
        )
    )
    x = X.astype(np.float32)

    def target_log_prob(a, b):
        z = tf.stack([a, b], axis=-1)
        return tf.reduce_sum(
            tfd.Normal(0.0, 1.0).log_prob(z) + tfd.Normal(z, NOISE).log_prob(x[:2]),
            axis=-1,
        )

    got = log_marginal_likelihood(target_log_prob, proposal, 64, chunk_size=10)
    exact = tf.reduce_sum(
        tfd.Normal(0.0, np.sqrt(1.0 + NOISE**2)).log_prob(X[:2])
    ).numpy()
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got, exact, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(num_samples=2.5), TypeError, "num_samples"),
        (dict(num_samples=10, chunk_size=0), ValueError, "chunk_size"),
        (dict(num_samples=10, chunk_size="5"), TypeError, "chunk_size"),
        (dict(num_samples=10, seed=(1, 2, 3)), ValueError, "seed"),
    ],
)
@mode_parameter
def test_bad_arguments(kwargs, error, match, mode):
    target, posterior = _target(), _posterior()
    assert_raises(
        mode, lambda: log_marginal_likelihood(target, posterior, **kwargs), error, match
    )


@mode_parameter
def test_bad_callables(mode):
    posterior, target = _posterior(), _target()
    assert_raises(
        mode,
        lambda: log_marginal_likelihood(None, posterior, 10),
        TypeError,
        "target_log_prob_fn",
    )
    assert_raises(
        mode,
        lambda: log_marginal_likelihood(target, "q", 10),
        TypeError,
        "surrogate_posterior",
    )
