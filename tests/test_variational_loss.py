"""monte_carlo_variational_loss: drop-in equality with tfp.vi, modes, bad input."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve

tfd = tfp.distributions
GE = tve.GradientEstimators
SEED = (17, 42)


def _normal_case():
    loc = tf.Variable([0.3, -0.2])
    scale = tfp.util.TransformedVariable([1.2, 0.7], tfp.bijectors.Softplus())
    q = tfd.MultivariateNormalDiag(loc, scale)
    stopped = tfd.MultivariateNormalDiag(
        tf.stop_gradient(loc), tf.stop_gradient(tf.convert_to_tensor(scale))
    )
    target = tfd.MultivariateNormalDiag([1.0, 2.0], [0.5, 2.0]).log_prob
    return target, q, (lambda: stopped), q.trainable_variables


def _batch_case():
    loc = tf.Variable([0.3, -0.2, 1.0])
    scale = tf.Variable([1.2, 0.7, 0.4])
    q = tfd.Normal(loc, scale)
    target = tfd.Normal([1.0, 2.0, -1.0], [0.5, 2.0, 1.0]).log_prob
    return (
        target,
        q,
        lambda: tfd.Normal(tf.stop_gradient(loc), tf.stop_gradient(scale)),
        [loc, scale],
    )


def _jd_sequential_case():
    a = tf.Variable(0.4)
    b = tf.Variable(-0.3)

    def build(a, b):
        return tfd.JointDistributionSequential(
            [tfd.Normal(a, 1.0), lambda z0: tfd.Normal(z0 + b, 0.5)]
        )

    q = build(a, b)
    model = tfd.JointDistributionSequential(
        [tfd.Normal(0.0, 1.0), lambda z0: tfd.Normal(2.0 * z0, 1.0)]
    )

    def target(z0, z1):
        return model.log_prob([z0, z1])

    return target, q, lambda: build(tf.stop_gradient(a), tf.stop_gradient(b)), [a, b]


def _jd_named_case():
    a = tf.Variable(0.4)
    b = tf.Variable([-0.3, 0.2])

    def build(a, b):
        return tfd.JointDistributionNamed(
            dict(
                u=tfd.Normal(a, 1.0),
                v=lambda u: tfd.Independent(tfd.Normal(u[..., None] + b, 0.5), 1),
            )
        )

    q = build(a, b)

    def target(u, v):
        return tfd.Normal(0.0, 1.0).log_prob(u) + tf.reduce_sum(
            tfd.Normal(2.0 * u[..., None], 1.0).log_prob(v), axis=-1
        )

    return target, q, lambda: build(tf.stop_gradient(a), tf.stop_gradient(b)), [a, b]


def _seeded_target_case():
    target, q, stopped, variables = _normal_case()

    def seeded_target(z, seed=None):
        noise = tf.random.stateless_normal(tf.shape(z)[:-1], seed=seed)
        return target(z) + 0.1 * noise

    return seeded_target, q, stopped, variables


CASES = {
    "tensor": _normal_case,
    "batch": _batch_case,
    "jd_sequential": _jd_sequential_case,
    "jd_named": _jd_named_case,
    "seeded_target": _seeded_target_case,
}

# (our estimator, importance_sample_size) that tfp.vi supports, and whether
# tfp.vi's gradient is correct there (so gradients must agree too).
SUPPORTED = [
    (GE.SCORE_FUNCTION, 1),
    (GE.REPARAMETERIZATION, 1),
    (GE.REPARAMETERIZATION, 3),
    (GE.DOUBLY_REPARAMETERIZED, 1),
    (GE.DOUBLY_REPARAMETERIZED, 3),
    (GE.VIMCO, 3),
]


@pytest.mark.parametrize("estimator,k", SUPPORTED, ids=lambda x: str(x))
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_loss_and_gradient_as_tfp_vi(case, estimator, k):
    target, q, stopped, variables = CASES[case]()
    kwargs = dict(sample_size=4, importance_sample_size=k, seed=SEED)
    with tf.GradientTape(persistent=True) as tape:
        ours = tve.monte_carlo_variational_loss(
            target, q, gradient_estimator=estimator, **kwargs
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = tfp.vi.monte_carlo_variational_loss(
                target,
                q,
                gradient_estimator=tfp.vi.GradientEstimators[estimator.name],
                stopped_surrogate_posterior=stopped(),
                **kwargs,
            )
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    # No model parameters and kl_reverse: here tfp.vi's gradients are right.
    for g_ours, g_theirs in zip(
        tape.gradient(ours, variables), tape.gradient(theirs, variables), strict=True
    ):
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-5)


def test_samples_match_tfp_vi():
    seen = {}

    def recording_target(key):
        def target(z):
            seen[key] = z
            return tfd.Normal(0.0, 1.0).log_prob(z)

        return target

    q = tfd.Normal(tf.Variable(0.5), 2.0)
    for estimator in GE:
        kwargs = dict(sample_size=3, importance_sample_size=2, seed=SEED)
        tve.monte_carlo_variational_loss(
            recording_target("ours"), q, gradient_estimator=estimator, **kwargs
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if estimator == GE.SCORE_FUNCTION:  # tfp.vi refuses K > 1 here
                kwargs = dict(sample_size=6, seed=SEED)
            tfp.vi.monte_carlo_variational_loss(
                recording_target("theirs"),
                q,
                gradient_estimator=tfp.vi.GradientEstimators[estimator.name],
                stopped_surrogate_posterior=tfd.Normal(0.5, 2.0),
                **kwargs,
            )
        np.testing.assert_array_equal(seen["ours"], seen["theirs"])


def test_score_function_supports_importance_sampling():
    target, q, _, variables = _normal_case()
    kwargs = dict(sample_size=4, importance_sample_size=5, seed=SEED)
    with tf.GradientTape() as tape:
        loss = tve.monte_carlo_variational_loss(
            target, q, gradient_estimator=GE.SCORE_FUNCTION, **kwargs
        )
    reference = tfp.vi.monte_carlo_variational_loss(
        target,
        q,
        gradient_estimator=tfp.vi.GradientEstimators.REPARAMETERIZATION,
        **kwargs,
    )
    np.testing.assert_allclose(loss, reference, rtol=1e-6)  # same draws, same bound
    assert all(np.all(np.isfinite(g)) for g in tape.gradient(loss, variables))
    with pytest.raises(ValueError, match="importance_sample_size"):
        tfp.vi.monte_carlo_variational_loss(
            target,
            q,
            gradient_estimator=tfp.vi.GradientEstimators.SCORE_FUNCTION,
            **kwargs,
        )


def test_accepts_tfp_vi_enum_members():
    target, q, _, _ = _normal_case()
    kwargs = dict(sample_size=4, importance_sample_size=2, seed=SEED)
    a = tve.monte_carlo_variational_loss(
        target, q, gradient_estimator=tfp.vi.GradientEstimators.VIMCO, **kwargs
    )
    b = tve.monte_carlo_variational_loss(
        target, q, gradient_estimator=GE.VIMCO, **kwargs
    )
    np.testing.assert_array_equal(a, b)


def test_default_estimator_chooses_as_tfp_vi():
    target, q, _, _ = _normal_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a reparameterized surrogate
        tve.monte_carlo_variational_loss(target, q, seed=SEED)
    poisson = tfd.Poisson(rate=tf.Variable(2.0))
    with pytest.warns(UserWarning, match="score-function"):
        tve.monte_carlo_variational_loss(
            tfd.Poisson(3.0).log_prob, poisson, sample_size=3, seed=SEED
        )


@pytest.mark.parametrize(
    "estimator", [GE.REPARAMETERIZATION, GE.DOUBLY_REPARAMETERIZED]
)
def test_pathwise_estimator_on_discrete_surrogate_names_alternatives(estimator):
    poisson = tfd.Poisson(rate=tf.Variable(2.0))
    with pytest.raises(ValueError, match="SCORE_FUNCTION.*VIMCO"):
        tve.monte_carlo_variational_loss(
            tfd.Poisson(3.0).log_prob, poisson, gradient_estimator=estimator
        )


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("estimator", list(GE), ids=lambda e: e.name)
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_every_estimator_runs_in_every_mode(mode, estimator, dtype):
    loc = tf.Variable(tf.constant([0.3, -0.2], dtype))
    q = tfd.MultivariateNormalDiag(loc, tf.constant([1.0, 0.5], dtype))
    target = tfd.MultivariateNormalDiag(
        tf.constant([1.0, 2.0], dtype), [0.5, 2.0]
    ).log_prob

    def loss_and_grad():
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target,
                q,
                sample_size=4,
                importance_sample_size=3,
                gradient_estimator=estimator,
                seed=SEED,
            )
        return loss, tape.gradient(loss, loc)

    eager = loss_and_grad()
    if mode != "eager":
        compiled = tf.function(loss_and_grad, jit_compile=(mode == "xla"))
        got = compiled()
        again = compiled()
        np.testing.assert_array_equal(got[0], again[0])  # deterministic
        np.testing.assert_array_equal(got[1], again[1])
        if mode == "function":  # XLA draws other samples for the same seed
            np.testing.assert_allclose(got[0], eager[0], rtol=1e-5)
            np.testing.assert_allclose(got[1], eager[1], rtol=1e-4, atol=1e-6)
        eager = got
    assert eager[0].dtype == dtype and eager[1].dtype == dtype
    assert np.isfinite(eager[0]) and np.all(np.isfinite(eager[1]))


def test_loss_matches_tfp_vi_under_xla():
    target, q, stopped, _ = _normal_case()

    @tf.function(jit_compile=True)
    def both():
        kwargs = dict(sample_size=4, importance_sample_size=3, seed=SEED)
        return (
            tve.monte_carlo_variational_loss(
                target, q, gradient_estimator=GE.DOUBLY_REPARAMETERIZED, **kwargs
            ),
            tfp.vi.monte_carlo_variational_loss(
                target,
                q,
                gradient_estimator=tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED,
                stopped_surrogate_posterior=stopped(),
                **kwargs,
            ),
        )

    ours, theirs = both()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def _good_args():
    return dict(
        target_log_prob_fn=tfd.Normal(0.0, 1.0).log_prob,
        surrogate_posterior=tfd.Normal(tf.Variable(0.0), 1.0),
    )


BAD_INPUTS = [
    (
        "not_callable_target",
        dict(target_log_prob_fn=3.0),
        TypeError,
        "target_log_prob_fn",
    ),
    (
        "surrogate_not_distribution",
        dict(surrogate_posterior=[1.0]),
        TypeError,
        "surrogate_posterior",
    ),
    ("sample_size_zero", dict(sample_size=0), ValueError, "sample_size"),
    ("sample_size_float", dict(sample_size=2.5), TypeError, "sample_size"),
    ("sample_size_bool", dict(sample_size=True), TypeError, "sample_size"),
    (
        "sample_size_float_tensor",
        dict(sample_size=tf.constant(2.0)),
        TypeError,
        "sample_size",
    ),
    (
        "importance_negative",
        dict(importance_sample_size=-1),
        ValueError,
        "importance_sample_size",
    ),
    (
        "importance_string",
        dict(importance_sample_size="4"),
        TypeError,
        "importance_sample_size",
    ),
    (
        "discrepancy_not_callable",
        dict(discrepancy_fn="kl"),
        TypeError,
        "discrepancy_fn",
    ),
    (
        "unknown_estimator",
        dict(gradient_estimator="reparam"),
        TypeError,
        "gradient_estimator",
    ),
    (
        "unknown_estimator_int",
        dict(gradient_estimator=1),
        TypeError,
        "gradient_estimator",
    ),
    (
        "vimco_one_particle",
        dict(gradient_estimator=GE.VIMCO),
        ValueError,
        "importance_sample_size",
    ),
    (
        "contradicting_use_reparameterization",
        dict(use_reparameterization=False, gradient_estimator=GE.REPARAMETERIZATION),
        ValueError,
        "use_reparameterization",
    ),
    (
        "stopped_not_distribution",
        dict(stopped_surrogate_posterior=1.0),
        TypeError,
        "stopped_surrogate_posterior",
    ),
    (
        "stopped_event_shape",
        dict(stopped_surrogate_posterior=tfd.MultivariateNormalDiag([0.0, 0.0])),
        ValueError,
        "stopped_surrogate_posterior",
    ),
    (
        "stopped_structure",
        dict(
            stopped_surrogate_posterior=tfd.JointDistributionSequential(
                [tfd.Normal(0.0, 1.0)]
            )
        ),
        ValueError,
        "stopped_surrogate_posterior.*structure",
    ),
    (
        "stopped_batch_shape",
        dict(stopped_surrogate_posterior=tfd.Normal([0.0, 0.0], 1.0)),
        ValueError,
        "stopped_surrogate_posterior.*batch_shape",
    ),
    (
        "stopped_dtype",
        dict(stopped_surrogate_posterior=tfd.Normal(tf.constant(0.0, tf.float64), 1.0)),
        ValueError,
        "stopped_surrogate_posterior.*dtype",
    ),
    (
        "stopped_discrete",
        dict(stopped_surrogate_posterior=tfd.Poisson(1.0)),
        ValueError,
        "stopped_surrogate_posterior.*reparameterization_type",
    ),
    (
        "pathwise_estimator_on_discrete_surrogate",
        dict(
            target_log_prob_fn=tfd.Poisson(3.0).log_prob,
            surrogate_posterior=tfd.Poisson(tf.Variable(2.0)),
            gradient_estimator=GE.REPARAMETERIZATION,
        ),
        ValueError,
        "SCORE_FUNCTION",
    ),
    (
        "importance_zero",
        dict(importance_sample_size=0),
        ValueError,
        "importance_sample_size",
    ),
    ("seed_float", dict(seed=1.5), TypeError, "seed"),
    ("seed_wrong_shape", dict(seed=(1, 2, 3)), ValueError, "seed"),
    ("seed_string", dict(seed="abc"), TypeError, "seed"),
    ("name_not_string", dict(name=3), TypeError, "name"),
    (
        "target_wrong_shape",  # a scalar broadcasts (as in tfp.vi); this cannot
        dict(target_log_prob_fn=lambda z: tf.zeros([7, 5])),
        ValueError,
        "target_log_prob_fn",
    ),
    (
        "target_wrong_dtype",
        dict(target_log_prob_fn=lambda z: tf.cast(z, tf.float64)),
        ValueError,
        "target_log_prob_fn",
    ),
]


@mode_parameter
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda b: b[0])
def test_bad_input_raises_clear_error(bad, mode):
    _, overrides, error, argument = bad
    args = dict(_good_args(), sample_size=3, seed=SEED)
    args.update(overrides)
    before = (
        [v.numpy() for v in args["surrogate_posterior"].trainable_variables]
        if hasattr(args["surrogate_posterior"], "trainable_variables")
        else []
    )

    assert_raises(
        mode, lambda: tve.monte_carlo_variational_loss(**args), error, argument
    )
    if before:
        after = [v.numpy() for v in args["surrogate_posterior"].trainable_variables]
        np.testing.assert_array_equal(before, after)
