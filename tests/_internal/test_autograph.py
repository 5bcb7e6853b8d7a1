"""Autograph leaves the package's code alone, as it leaves TFP's and Keras'."""

import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow.python.autograph.impl import conversion

import tfp_vi_estimators as tve
from tfp_vi_estimators._internal import autograph
from tfp_vi_estimators.variational_loss import evaluate_loss

tfd = tfp.distributions


@pytest.mark.parametrize(
    "function",
    [tve.monte_carlo_variational_loss, evaluate_loss, tve.log_marginal_likelihood],
)
def test_package_functions_are_not_converted_like_tfp_vis(function):
    assert conversion.is_allowlisted(tfp.vi.monte_carlo_variational_loss)
    assert conversion.is_allowlisted(function)


def test_the_rule_is_added_once():
    autograph.exempt_from_autograph("tfp_vi_estimators")
    rules = [
        rule
        for rule in autograph._autograph_config.CONVERSION_RULES
        if rule.matches("tfp_vi_estimators")
    ]
    assert len(rules) == 1


@pytest.mark.parametrize("vi", [tfp.vi, tve], ids=["tfp.vi", "ours"])
def test_a_targets_python_control_flow_is_treated_as_in_tfp_vi(vi):
    """Called through unconverted code, the target is not converted either: a
    Python `if` on a tensor raises in a `tf.function` in both libraries (as
    tfp.vi's RuntimeError quoting the calls with and without `seed=`)."""
    surrogate = tfd.Normal(0.0, 1.0)

    def target(z):
        if tf.reduce_sum(z) > 0.0:  # Python control flow on a tensor
            return -(z**2)
        return -2.0 * z**2

    @tf.function
    def loss():
        return vi.monte_carlo_variational_loss(target, surrogate, seed=(1, 2))

    with pytest.raises(RuntimeError, match="OperatorNotAllowedInGraphError"):
        loss()
