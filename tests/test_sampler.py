"""The sampler: layouts as tfp.vi draws them, and only the requested densities."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import estimators, sampler
from tfp_vi_estimators._internal.quasi_monte_carlo import (
    QuasiMonteCarlo,
    randomized_sobol_normal,
)
from tfp_vi_estimators.estimators.gradient_scale import send_scale
from tfp_vi_estimators.estimators.plan import Density, Layout, PathGradient

tfd = tfp.distributions
SEED = (3, 4)


def _surrogate():
    return tfd.Normal(tf.Variable([0.5, -1.0]), tf.Variable([1.2, 0.8]))


def test_draws_first_layout_is_tfp_vi_order_and_arranges_s_by_k():
    q = _surrogate()
    plan = estimators.Reparameterization().plan
    draw = sampler.draw(plan, q, None, 3, 2, SEED)
    expected = q.sample([6], seed=SEED)
    np.testing.assert_array_equal(draw.samples, expected)
    # [S * K] + batch -> [S, K] + batch, draws in order.
    np.testing.assert_array_equal(
        draw.log_densities.surrogate, np.reshape(q.log_prob(expected), [3, 2, 2])
    )
    assert draw.log_prob_spec.shape == [6, 2]
    assert draw.log_densities.scale_port is None


def test_particles_first_layout_is_tfp_vi_vimco_order():
    q = _surrogate()
    draw = sampler.draw(estimators.VIMCO().plan, q, None, 3, 2, SEED)
    expected = q.sample([2, 3], seed=SEED)  # [K, S] + batch
    np.testing.assert_array_equal(draw.samples, expected)
    np.testing.assert_array_equal(
        draw.log_densities.surrogate,
        np.transpose(q.log_prob(expected), [1, 0, 2]),
    )


def test_only_requested_densities_are_computed():
    q = _surrogate()
    plan = estimators.DoublyReparameterized().plan
    draw = sampler.draw(plan, q, None, 2, 1, SEED)
    assert draw.log_densities.stopped_parameters is not None
    assert draw.log_densities.stopped_sample is None
    assert draw.log_densities.surrogate is None
    assert plan.path_gradient is PathGradient.SCALED
    assert draw.log_densities.scale_port.shape == [2, 1, 2]  # [S, K] + batch
    partial = estimators.DoublyReparameterized(score_weight=0.5).plan
    assert partial.densities == {Density.STOPPED_PARAMETERS, Density.STOPPED_SAMPLE}


def test_stopped_samples_carry_no_gradient_and_live_ones_do():
    q = _surrogate()
    for plan, connected in (
        (estimators.ScoreFunction().plan, False),
        (estimators.Reparameterization().plan, True),
    ):
        with tf.GradientTape() as tape:
            draw = sampler.draw(plan, q, None, 2, 1, SEED)
            total = tf.reduce_sum(draw.samples)
        grad = tape.gradient(total, q.loc)
        assert (grad is not None) == connected


def test_one_draw_per_mixture_component():
    q = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.Variable([0.0, 1.0, -1.0])),
        tfd.Normal(tf.Variable([-2.0, 0.0, 2.0]), 0.5),
    )
    plan = estimators.MixtureStickingTheLanding().plan
    assert plan.layout is Layout.ONE_PER_COMPONENT
    draw = sampler.draw(plan, q, None, 4, 1, SEED)
    assert draw.samples.shape == [4, 3]
    expected = q.components_distribution.sample([4], seed=SEED)
    np.testing.assert_array_equal(draw.samples, expected)
    np.testing.assert_allclose(
        np.exp(draw.log_densities.component_log_weights[0]),
        tf.nn.softmax([0.0, 1.0, -1.0]),
        rtol=1e-6,
    )


def test_draw_is_frozen():
    q = _surrogate()
    draw = sampler.draw(estimators.Reparameterization().plan, q, None, 1, 1, SEED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        draw.samples = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        draw.log_densities.target = None
    with_target = draw.with_target(tf.zeros([1, 2]))
    assert with_target.target.shape == [1, 1, 2]
    assert draw.log_densities.target is None


def _full_rank():
    return tfd.MultivariateNormalTriL(
        tf.Variable([0.1, -0.2, 0.4]),
        tf.Variable([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.1, 1.2]]),
    )


def test_doubly_reparameterized_keeps_the_pre_image_and_tfp_vi_samples():
    """A full-rank surrogate: same samples as tfp.vi, `log q'` without a solve."""
    q = _full_rank()
    plan = estimators.DoublyReparameterized().plan
    draw = sampler.draw(plan, q, None, 3, 2, SEED)
    samples, log_prob = q.experimental_sample_and_log_prob([6], seed=SEED)
    np.testing.assert_array_equal(draw.samples, samples)
    np.testing.assert_array_equal(
        draw.log_densities.stopped_parameters, np.reshape(log_prob, [3, 2])
    )
    graph = tf.function(lambda: sampler.draw(plan, q, None, 3, 2, SEED).samples)
    ops = {op.type for op in graph.get_concrete_function().graph.get_operations()}
    assert "MatrixTriangularSolve" not in ops


def test_a_given_stopped_surrogate_is_scored_as_given():
    q = _full_rank()
    elsewhere = tfd.MultivariateNormalDiag(tf.zeros(3))
    plan = estimators.DoublyReparameterized().plan
    draw = sampler.draw(plan, q, elsewhere, 2, 1, SEED)
    # The pre-image route draws tfp.vi's samples; the copy scores them.
    np.testing.assert_array_equal(draw.samples, q.sample([2], seed=SEED))
    np.testing.assert_allclose(
        draw.log_densities.stopped_parameters,
        np.reshape(elsewhere.log_prob(draw.samples), [2, 1]),
        rtol=1e-6,
    )


def test_quasi_monte_carlo_draws_push_sobol_noise_through_the_surrogate():
    q = _full_rank()
    plan = estimators.Reparameterization().plan
    draw = sampler.draw(plan, q, None, 4, 2, SEED, sampling=QuasiMonteCarlo())
    noise = randomized_sobol_normal(8, [3], SEED)
    expected = q.loc + tf.linalg.matvec(q.scale.to_dense(), noise)
    np.testing.assert_allclose(draw.samples, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        draw.log_densities.surrogate,
        np.reshape(q.log_prob(draw.samples), [4, 2]),
        rtol=1e-5,
    )
    again = sampler.draw(plan, q, None, 4, 2, SEED, sampling=QuasiMonteCarlo())
    np.testing.assert_array_equal(draw.samples, again.samples)


def test_a_distribution_with_its_own_pre_image_is_scored_through_its_hook():
    # The straight-through surrogate offers the pre-image hook; the sampler
    # knows no distribution family, and the stopped density is the relaxed
    # one at the kept pre-image (the pmf of the hard samples would be another).
    from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough

    logits = tf.Variable([0.3, -0.8])
    q = RelaxedBernoulliStraightThrough(0.5, logits=logits)
    plan = estimators.DoublyReparameterized().plan
    with tf.GradientTape(persistent=True) as tape:
        draw = sampler.draw(plan, q, None, 2, 3, SEED)
        stopped = draw.log_densities.stopped_parameters
        port = draw.log_densities.scale_port
        # The path gradient scaled by 1 (as drawn), by 3, and by 0.
        scaled = [stopped + send_scale(port, c * tf.ones_like(port)) for c in (1, 3, 0)]
    samples, pre_image = q.sample_with_pre_image([6], seed=SEED)
    np.testing.assert_array_equal(draw.samples, samples)
    relaxed = np.reshape(q.log_prob_of_pre_image(pre_image), [2, 3, 2])
    np.testing.assert_array_equal(stopped, relaxed)
    assert not np.allclose(stopped, np.reshape(q.log_prob(samples), [2, 3, 2]))
    # Parameters stopped: the gradient comes through the pre-image's path,
    # which the samples' gradient scaling reaches.
    once, thrice, never = (tape.gradient(x, logits).numpy() for x in scaled)
    assert np.all(once != 0)
    np.testing.assert_allclose(thrice, 3 * once, rtol=1e-6)
    np.testing.assert_array_equal(never, 0)


def _mixture():
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.Variable([0.0, 1.0])),
        tfd.Normal(tf.Variable([-1.0, 1.0]), 0.5),
    )


@pytest.mark.parametrize(
    "estimator, surrogate, sampling, route",
    [
        (estimators.Reparameterization(), _surrogate, None, sampler.IidRoute),
        (estimators.DoublyReparameterized(), _surrogate, None, sampler.IidRoute),
        (estimators.DoublyReparameterized(), _full_rank, None, sampler.PreImageRoute),
        (estimators.ScoreFunction(), _full_rank, None, sampler.IidRoute),
        (estimators.Reparameterization(), _full_rank, None, sampler.IidRoute),
        (
            estimators.Reparameterization(),
            _full_rank,
            QuasiMonteCarlo(),
            sampler.QuasiMonteCarloRoute,
        ),
        (
            estimators.DisARM(),
            lambda: tfd.Bernoulli(logits=tf.Variable([0.2, -0.4])),
            None,
            sampler.DiscreteRoute,
        ),
        (
            estimators.MixtureStickingTheLanding(),
            _mixture,
            None,
            sampler.EachComponentRoute,
        ),
    ],
)
def test_the_route_follows_the_plan_and_the_surrogates_structure(
    estimator, surrogate, sampling, route
):
    chosen = sampler.route_for(estimator.plan, surrogate(), sampling)
    assert type(chosen) is route
    assert chosen.plan is estimator.plan


def test_checked_options_draw_a_rebuilt_surrogate_without_inspecting_it(
    monkeypatch,
):
    """The route is decided when the options are checked; evaluating the loss
    for another surrogate of the same structure (a fit's next step) follows
    it and gives the loss a fresh check would give."""
    from tfp_vi_estimators import loss_config, variational_loss
    from tfp_vi_estimators._internal import pre_image

    def target(z):
        return -0.5 * tf.reduce_sum(z**2, axis=-1)

    estimator = estimators.DoublyReparameterized()
    options = loss_config.check_options(
        _full_rank(),
        sample_size=3,
        importance_sample_size=2,
        gradient_estimator=estimator,
    )
    assert isinstance(options.route, sampler.PreImageRoute)
    rebuilt = tfd.MultivariateNormalTriL(
        tf.constant([1.0, 0.5, -0.3]),
        tf.constant([[0.9, 0.0, 0.0], [0.1, 1.1, 0.0], [0.4, -0.2, 0.7]]),
    )
    fresh = variational_loss.monte_carlo_variational_loss(
        target, rebuilt, 3, 2, gradient_estimator=estimator, seed=SEED
    )

    def inspected(_):
        raise AssertionError("the surrogate's structure was inspected again")

    monkeypatch.setattr(pre_image, "has_pre_image", inspected)
    config = loss_config.LossConfig(loss_config.Problem(target, rebuilt), options)
    np.testing.assert_array_equal(variational_loss.evaluate_loss(config, SEED), fresh)
