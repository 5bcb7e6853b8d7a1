"""Drop-in for `tfp.vi`: every public name, and the loss's observable behaviour.

Each comparison runs the same program with `tfp.vi` and with this package on
the same seed, eagerly, in a `tf.function` graph and under XLA, and demands
equal values (and gradients, where defined) to float rounding.
"""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve

tfd = tfp.distributions
SEED = (5, 8)
MODES = ("eager", "graph", "xla")


def _run(fn, mode):
    if mode == "graph":
        fn = tf.function(fn)
    elif mode == "xla":
        fn = tf.function(fn, jit_compile=True)
    return tf.nest.map_structure(np.asarray, fn())


def test_every_public_name_of_tfp_vi_exists_here():
    theirs = {n for n in dir(tfp.vi) if not n.startswith("_")}
    missing = sorted(n for n in theirs if not hasattr(tve, n))
    assert not missing, missing


def test_mutual_information_is_tfps():
    for bound in (
        "lower_bound_barber_agakov",
        "lower_bound_info_nce",
        "lower_bound_jensen_shannon",
        "lower_bound_nguyen_wainwright_jordan",
    ):
        assert getattr(tve.mutual_information, bound) is getattr(
            tfp.vi.mutual_information, bound
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("f", ["kl_reverse", "kl_forward"])
def test_csiszar_vimco_matches_tfp_vi(mode, f):
    loc = tf.Variable([0.3, -0.2])
    q = tfd.Normal(loc, 1.2)
    theta = tf.Variable(0.5)

    def p_log_prob(z):
        return tfd.Normal(theta, 2.0).log_prob(z)

    def both():
        results = []
        for module in (tve, tfp.vi):
            with tf.GradientTape() as tape:
                value = module.csiszar_vimco(
                    getattr(tve, f),
                    p_log_prob,
                    q,
                    num_draws=4,
                    num_batch_draws=3,
                    seed=SEED,
                )
            results.append((value, tape.gradient(value, [loc, theta])))
        return results

    (ours, our_grads), (theirs, their_grads) = _run(both, mode)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    for a, b in zip(our_grads, their_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_csiszar_vimco_needs_two_draws():
    with pytest.raises(ValueError, match="num_draws"):
        tve.csiszar_vimco(tve.kl_reverse, lambda z: z, tfd.Normal(0.0, 1.0), 1)


@pytest.mark.parametrize("sample_size", [4.0, 1e1, np.float64(3.0)])
def test_integral_float_sizes_are_accepted_as_tfp_vi_accepts_them(sample_size):
    q = tfd.Normal(0.0, 1.0)
    target = tfd.Normal(1.0, 2.0).log_prob
    kwargs = dict(sample_size=sample_size, seed=SEED)
    np.testing.assert_allclose(
        tve.monte_carlo_variational_loss(target, q, **kwargs),
        tfp.vi.monte_carlo_variational_loss(target, q, **kwargs),
        rtol=1e-6,
    )


@pytest.mark.parametrize("bad, error", [(2.5, TypeError), (0.0, ValueError)])
def test_non_integral_or_zero_sizes_still_raise(bad, error):
    with pytest.raises(error, match="sample_size"):
        tve.monte_carlo_variational_loss(
            lambda z: z, tfd.Normal(0.0, 1.0), sample_size=bad
        )


def _joint_flavours():
    def coroutine_model():
        z = yield tfd.JointDistributionCoroutine.Root(tfd.Normal(0.0, 1.0, name="z"))
        yield tfd.Normal(z, 1.0, name="x")

    sequential = [tfd.Normal(0.0, 1.0), lambda z: tfd.Normal(z, 1.0)]
    named = dict(z=tfd.Normal(0.0, 1.0), x=lambda z: tfd.Normal(z, 1.0))
    return {
        "sequential": tfd.JointDistributionSequential(sequential),
        "sequential_auto_batched": tfd.JointDistributionSequentialAutoBatched(
            sequential
        ),
        "named": tfd.JointDistributionNamed(named),
        "named_auto_batched": tfd.JointDistributionNamedAutoBatched(named),
        "coroutine": tfd.JointDistributionCoroutine(coroutine_model),
        "coroutine_auto_batched": tfd.JointDistributionCoroutineAutoBatched(
            coroutine_model
        ),
    }


@pytest.mark.parametrize("flavour", sorted(_joint_flavours()))
def test_joint_samples_reach_the_target_by_tfps_structure_rule(flavour):
    q = _joint_flavours()[flavour]

    def target(z, x):  # spread as positional or keyword arguments, as tfp.vi does
        return tfd.Normal(1.0, 1.0).log_prob(z) + tfd.Normal(z, 2.0).log_prob(x)

    kwargs = dict(sample_size=3, seed=SEED)
    np.testing.assert_allclose(
        tve.monte_carlo_variational_loss(target, q, **kwargs),
        tfp.vi.monte_carlo_variational_loss(target, q, **kwargs),
        rtol=1e-6,
    )


def test_a_target_that_fails_with_a_seed_is_retried_without_it():
    q = tfd.Normal(0.0, 1.0)

    def target(z, seed=None):
        if seed is not None:
            raise ValueError("this model cannot be seeded")
        return tfd.Normal(1.0, 2.0).log_prob(z)

    np.testing.assert_allclose(
        tve.monte_carlo_variational_loss(target, q, sample_size=3, seed=SEED),
        tfp.vi.monte_carlo_variational_loss(target, q, sample_size=3, seed=SEED),
        rtol=1e-6,
    )


def test_a_target_that_always_fails_raises_runtime_error_quoting_both():
    def target(z, seed=None):
        raise ValueError(f"broken (seed={seed is not None})")

    for module in (tve, tfp.vi):
        with pytest.raises(RuntimeError, match="requires a `seed`") as info:
            module.monte_carlo_variational_loss(target, tfd.Normal(0.0, 1.0), seed=SEED)
        assert "broken (seed=True)" in str(info.value)
        assert "broken (seed=False)" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_target_whose_output_broadcasts_is_accepted(mode):
    q = tfd.Normal(tf.Variable([0.1, 0.4]), 1.0)

    def target(z):  # one value per sample, not per batch member: broadcasts
        return tf.reduce_sum(tfd.Normal(0.5, 1.0).log_prob(z), axis=-1, keepdims=True)

    def both():
        return [
            module.monte_carlo_variational_loss(target, q, sample_size=3, seed=SEED)
            for module in (tve, tfp.vi)
        ]

    ours, theirs = _run(both, mode)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize(
    "output_shape, words", [([4, 4], "broadcasts to"), ([4, 3], "does not broadcast")]
)
def test_a_target_output_that_enlarges_the_loss_is_refused(output_shape, words):
    # Per-dimension log-densities [S, D] where [S] is expected: [4, 4] would
    # broadcast silently into a [4, 4] loss; both shapes are named.
    q = tfd.Normal(0.0, 1.0)  # scalar: the log_prob of 4 samples is [4]
    with pytest.raises(ValueError, match=rf"\(4,\).*\({output_shape[0]}, "):
        tve.monte_carlo_variational_loss(
            lambda z: tf.zeros(output_shape), q, sample_size=4, seed=SEED
        )
    with pytest.raises(ValueError, match=words):
        tve.monte_carlo_variational_loss(
            lambda z: tf.zeros(output_shape), q, sample_size=4, seed=SEED
        )


_SURROGATE_BUILDERS = {
    "factored": lambda: tfp.experimental.vi.build_factored_surrogate_posterior(
        event_shape=[2]
    ),
    "affine": lambda: tfp.experimental.vi.build_affine_surrogate_posterior(
        event_shape=[2], operators="tril"
    ),
    "make_trainable": lambda: tfp.experimental.util.make_trainable(
        tfd.MultivariateNormalDiag, batch_and_event_shape=[2]
    ),
}


@pytest.mark.parametrize("builder", sorted(_SURROGATE_BUILDERS))
@pytest.mark.parametrize(
    "estimator",
    [
        tve.GradientEstimators.REPARAMETERIZATION,
        tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
    ],
)
def test_surrogates_built_by_tfps_helpers_are_accepted(builder, estimator):
    tf.random.set_seed(0)
    q = _SURROGATE_BUILDERS[builder]()
    assert not isinstance(q, tfd.Distribution)

    def target(z):
        return tfd.MultivariateNormalDiag([1.0, -1.0]).log_prob(z)

    with tf.GradientTape() as tape:
        ours = tve.monte_carlo_variational_loss(
            target, q, sample_size=5, gradient_estimator=estimator, seed=SEED
        )
    grads = tape.gradient(ours, q.trainable_variables)
    theirs = tfp.vi.monte_carlo_variational_loss(target, q, sample_size=5, seed=SEED)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert grads and all(g is not None for g in grads)


def test_something_that_is_not_a_distribution_is_still_refused():
    with pytest.raises(TypeError, match="surrogate_posterior.*lacks"):
        tve.monte_carlo_variational_loss(lambda z: z, object())


@pytest.mark.slow  # a fresh interpreter per check
def test_subpackages_are_attributes_without_their_own_import():
    code = (
        "import tfp_vi_estimators as t, sys\n"
        "assert 'tfp_vi_estimators.keras_models' not in sys.modules\n"
        "print(t.keras_models.VariationalModel.__name__, "
        "t.distributions.OMTMultivariateNormal.__name__, "
        "t.diagnostics.gradient_moments.__name__, t.fitting.__name__, "
        "t.estimators.VIMCO.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "VariationalModel OMTMultivariateNormal gradient_moments" in result.stdout
