"""`check_arguments` resolves the estimator once and returns a frozen config."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.loss_config import LossConfig, check_arguments
from tfp_vi_estimators.quasi_monte_carlo import QuasiMonteCarlo
from tfp_vi_estimators.variational_loss import evaluate_loss

tfd = tfp.distributions


def _problem():
    q = tfd.Normal(tf.Variable(0.3), tf.Variable(1.1))
    return (lambda z: tfd.Normal(1.0, 2.0).log_prob(z)), q


def test_config_is_frozen_and_holds_the_resolved_estimator():
    target, q = _problem()
    config = check_arguments(
        target,
        q,
        sample_size=4,
        gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
    )
    assert isinstance(config, LossConfig)
    assert isinstance(config.estimator, estimators.DoublyReparameterized)
    assert config.name == "monte_carlo_variational_loss"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sample_size = 2


def test_evaluate_loss_equals_the_loss_for_the_same_seed():
    target, q = _problem()
    kwargs = dict(sample_size=5, importance_sample_size=2)
    config = check_arguments(target, q, **kwargs)
    np.testing.assert_array_equal(
        evaluate_loss(config, (1, 2)),
        tve.monte_carlo_variational_loss(target, q, seed=(1, 2), **kwargs),
    )


def test_mixed_estimator_needs_a_joint_distribution():
    target, q = _problem()
    with pytest.raises(ValueError, match="JointDistribution"):
        check_arguments(
            target, q, gradient_estimator=estimators.MixedReparameterization()
        )


def test_sampling_is_checked_and_normalized():
    target, q = _problem()
    assert check_arguments(target, q).sampling is None
    assert check_arguments(target, q, sampling="iid").sampling is None
    config = check_arguments(target, q, sample_size=8, sampling="rqmc")
    assert config.sampling == QuasiMonteCarlo()
    assert (
        check_arguments(target, q, sampling=QuasiMonteCarlo()).sampling
        == config.sampling
    )
    with pytest.raises(TypeError, match="`sampling` must be"):
        check_arguments(target, q, sampling=None)


def _loss(target, q, sampling):
    return tve.monte_carlo_variational_loss(target, q, sampling=sampling)


def _fit(target, q, sampling):
    return tve.fit_surrogate_posterior(
        target, q, keras.optimizers.SGD(0.1), 3, sampling=sampling, progress=False
    )


def _stateless_fit(target, q, sampling):
    return tve.fit_surrogate_posterior_stateless(
        target,
        lambda loc: tfd.Normal(loc, 1.1),
        [tf.constant(0.3)],
        tve.optimizers.sgd(0.1),
        3,
        sampling=sampling,
    )


def _keras_model(target, q, sampling):
    # Built, not fitted: `sampling` is checked by the constructor.
    return tve.keras_models.SurrogatePosteriorModel(target, q, sampling=sampling)


@mode_parameter
@pytest.mark.parametrize(
    "sampling, error",
    [
        (None, TypeError),
        (1, TypeError),
        (["iid"], TypeError),
        (b"iid", TypeError),
        (QuasiMonteCarlo, TypeError),  # the class, not an instance
        ("sobol", ValueError),
        ("IID", ValueError),
        ("", ValueError),
    ],
)
@pytest.mark.parametrize(
    "entry_point",
    [_loss, _fit, _stateless_fit, _keras_model],
    ids=lambda f: f.__name__.strip("_"),
)
def test_bad_sampling_is_refused_by_every_entry_point(
    mode, entry_point, sampling, error
):
    target, q = _problem()
    before = [v.numpy() for v in q.trainable_variables]
    assert_raises(
        mode, lambda: entry_point(target, q, sampling), error, "`sampling` must be"
    )
    np.testing.assert_array_equal([v.numpy() for v in q.trainable_variables], before)


def test_loss_settings_are_checked_alone_then_against_a_surrogate():
    """The options every fit and Keras model keeps: frozen, checked without a
    surrogate (naming the argument), then resolved against one."""
    from tfp_vi_estimators.loss_config import LossSettings, check_options

    settings = LossSettings(sample_size=4.0, importance_sample_size=2)
    assert settings.sample_size == 4 and type(settings.sample_size) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sample_size = 8
    for bad, error in (
        (dict(sample_size=2.5), TypeError),
        (dict(importance_sample_size=0), ValueError),
        (dict(discrepancy_fn="kl"), TypeError),
        (dict(sampling="sobol"), ValueError),
    ):
        with pytest.raises(error, match=f"`{next(iter(bad))}`"):
            LossSettings(**bad)
    _, q = _problem()
    options = settings.options_for(q)
    direct = check_options(q, sample_size=4, importance_sample_size=2)
    for name in ("sample_size", "importance_sample_size", "discrepancy_fn"):
        assert getattr(options, name) == getattr(direct, name)
    assert repr(options.estimator) == repr(direct.estimator)
    assert type(options.route) is type(direct.route)
    vimco = LossSettings(gradient_estimator=tve.GradientEstimators.VIMCO)
    with pytest.raises(ValueError, match="`importance_sample_size` must be at least 2"):
        vimco.options_for(q)  # what needs the estimator is checked here
