"""The GradientEstimators enum and the resolution of estimator arguments."""

import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimator_choice import resolve_gradient_estimator
from tfp_vi_estimators.loss_config import check_arguments

tfd = tfp.distributions
GE = tve.GradientEstimators


def test_members_are_exactly_tfp_vis():
    assert [m.name for m in GE] == [
        "SCORE_FUNCTION",
        "REPARAMETERIZATION",
        "DOUBLY_REPARAMETERIZED",
        "VIMCO",
    ]
    assert [m.value for m in GE] == [m.value for m in tfp.vi.GradientEstimators]


@pytest.mark.parametrize(
    "member,cls",
    [
        (GE.SCORE_FUNCTION, estimators.ScoreFunction),
        (GE.REPARAMETERIZATION, estimators.Reparameterization),
        (GE.DOUBLY_REPARAMETERIZED, estimators.DoublyReparameterized),
        (GE.VIMCO, estimators.VIMCO),
    ],
)
def test_each_member_dispatches_to_its_estimator(member, cls):
    q = tfd.Normal(0.0, 1.0)
    assert type(resolve_gradient_estimator(member, None, q)) is cls
    tfp_member = tfp.vi.GradientEstimators[member.name]
    assert type(resolve_gradient_estimator(tfp_member, None, q)) is cls


def test_configured_object_is_used_as_given():
    estimator = estimators.DoublyReparameterized()
    assert (
        resolve_gradient_estimator(estimator, None, tfd.Normal(0.0, 1.0)) is estimator
    )


def test_default_follows_reparameterization_type():
    normal = tfd.Normal(tf.Variable(0.0), 1.0)
    assert isinstance(
        resolve_gradient_estimator(None, None, normal), estimators.Reparameterization
    )
    with pytest.warns(UserWarning):
        chosen = resolve_gradient_estimator(None, None, tfd.Bernoulli(0.3))
    assert isinstance(chosen, estimators.ScoreFunction)
    with pytest.warns(UserWarning):
        chosen = resolve_gradient_estimator(None, False, normal)
    assert isinstance(chosen, estimators.ScoreFunction)


def test_use_reparameterization_on_discrete_surrogate_raises():
    # The estimator is chosen by `resolve_gradient_estimator`; whether it can
    # serve the surrogate is checked with the loss's other arguments.
    with pytest.raises(ValueError, match="not fully reparameterized"):
        check_arguments(lambda z: z, tfd.Bernoulli(0.3), use_reparameterization=True)
