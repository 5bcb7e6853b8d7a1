"""`joint_parts` runs a JointDistribution's model as TFP's sampling does.

TFP's private model runner is the one thing here a TFP release can break; a
callback that draws each part as TFP does must give TFP's own samples and
log-density (exactly: same ops, same seeds, same process) for every kind of
joint distribution, including one run under `tf.vectorized_map`.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import joint_parts

tfd = tfp.distributions
SEED = (5, 8)


def _coroutine():
    a = yield tfd.JointDistributionCoroutine.Root(tfd.Normal(0.0, 1.0, name="a"))
    yield tfd.Normal(a, 0.5, name="b")
    yield tfd.JointDistributionCoroutine.Root(tfd.LogNormal(0.0, 1.0, name="c"))


@tfd.JointDistributionCoroutineAutoBatched
def _auto_batched():
    a = yield tfd.Normal(0.0, 1.0, name="a")
    yield tfd.Normal(a, tf.ones([2]), name="b")


JOINTS = {
    "sequential": lambda: tfd.JointDistributionSequential(
        [tfd.Normal(0.0, 1.0), lambda a: tfd.Normal(a, 0.5), tfd.LogNormal(0.0, 1.0)]
    ),
    "named": lambda: tfd.JointDistributionNamed(
        dict(
            a=tfd.Normal(0.0, 1.0),
            b=lambda a: tfd.Normal(a, 0.5),
            c=tfd.LogNormal(0.0, 1.0),
        )
    ),
    "coroutine": lambda: tfd.JointDistributionCoroutine(_coroutine),
    "auto_batched_vectorized": lambda: _auto_batched,
}
ROOTS = {
    "sequential": [True, False, True],
    "named": [True, False, True],
    "coroutine": [True, False, True],
    "auto_batched_vectorized": [False, False],  # unknown under vectorized_map
}


def _as_tfp_draws(step):
    value, log_prob = step.distribution.experimental_sample_and_log_prob(
        step.sample_shape, seed=step.seed
    )
    return value, (value, log_prob, step.is_root)


@pytest.mark.parametrize("name", JOINTS)
def test_a_callback_drawing_as_tfp_gives_tfps_samples_and_log_prob(name):
    joint = JOINTS[name]()
    traced = joint_parts.run_model(joint, _as_tfp_draws, [4], SEED)
    values, log_probs, roots = zip(*traced, strict=True)
    if joint_parts.is_vectorized(joint):
        roots = [False] * len(roots)  # traced inside vectorized_map: tensors
    samples = joint_parts.unflatten(joint, list(values))
    expected, expected_log_prob = joint.experimental_sample_and_log_prob([4], seed=SEED)
    for ours, theirs in zip(
        tf.nest.flatten(samples), tf.nest.flatten(expected), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(
        joint_parts.total_log_prob(joint, list(log_probs)), expected_log_prob
    )
    assert list(roots) == ROOTS[name]
    assert joint_parts.flatten(joint, samples)[0] is values[0]


def test_given_values_reach_the_callback_and_build_the_children():
    joint = JOINTS["sequential"]()
    given = [tf.constant([1.0, 2.0]), tf.constant([0.0, 0.0]), tf.constant([3.0, 4.0])]

    def keep_value(step):
        return step.value, step.distribution

    distributions = joint_parts.run_model(joint, keep_value, [2], SEED, value=given)
    np.testing.assert_array_equal(distributions[1].loc, given[0])
    assert [type(d) for d in joint_parts.single_sample_parts(joint)] == [
        tfd.Normal,
        tfd.Normal,
        tfd.LogNormal,
    ]
