"""fit_surrogate_posterior's argument checks, eagerly and inside tf.function."""

import keras
import numpy as np
import pytest
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve
from tfp_vi_estimators.fitting import fit_surrogate_posterior
from tfp_vi_estimators.fitting.arguments import FitArguments

GE = tve.GradientEstimators


@pytest.mark.parametrize(
    "override, error, argument",
    [
        (dict(target_log_prob_fn=3.0), TypeError, "target_log_prob_fn"),
        (dict(surrogate_posterior="q"), TypeError, "surrogate_posterior"),
        (dict(optimizer="adam"), TypeError, "optimizer"),
        (dict(num_steps=0), ValueError, "num_steps"),
        (dict(num_steps=2.5), TypeError, "num_steps"),
        (dict(convergence_criterion=object()), TypeError, "convergence_criterion"),
        (dict(trace_fn=1), TypeError, "trace_fn"),
        (dict(sample_size=-1), ValueError, "sample_size"),
        (dict(importance_sample_size=True), TypeError, "importance_sample_size"),
        (dict(trainable_variables=[1.0]), TypeError, "trainable_variables"),
        (dict(jit_compile="yes"), TypeError, "jit_compile"),
        (dict(seed="s"), TypeError, "seed"),
        (dict(name=3), TypeError, "name"),
        (dict(gradient_estimator="dr"), TypeError, "gradient_estimator"),
        (dict(gradient_estimator=GE.VIMCO), ValueError, "importance_sample_size"),
        (dict(progress="on"), TypeError, "progress"),
        (dict(checkpoint_dir=3), TypeError, "checkpoint_dir"),
        (dict(checkpoint_every=5), ValueError, "checkpoint_every"),
        (
            dict(checkpoint_dir="/tmp/x", checkpoint_every=0),
            ValueError,
            "checkpoint_every",
        ),
    ],
)
@mode_parameter
def test_bad_arguments_name_the_argument(override, error, argument, mode, problem):
    q = problem.surrogate()
    kwargs = dict(
        target_log_prob_fn=problem.target,
        surrogate_posterior=q,
        optimizer=keras.optimizers.Adam(0.1),
        num_steps=5,
    )
    kwargs.update(override)
    assert_raises(mode, lambda: fit_surrogate_posterior(**kwargs), error, argument)
    # Checked before any tensor work: the surrogate is untouched.
    np.testing.assert_array_equal(q.mean(), np.float32(problem.initial_loc))


@pytest.mark.parametrize(
    "num_steps, checkpoint_dir, checkpoint_every, expected",
    [
        (95, None, None, None),
        (95, "/tmp/x", None, 9),  # max(1, num_steps // 10)
        (5, "/tmp/x", None, 1),
        (95, "/tmp/x", 7, 7),
    ],
)
def test_checkpoint_every_defaults_to_a_tenth_of_the_steps(
    num_steps, checkpoint_dir, checkpoint_every, expected
):
    arguments = FitArguments(
        optimizer=keras.optimizers.Adam(0.1),
        num_steps=np.int64(num_steps),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    assert arguments.num_steps == num_steps and type(arguments.num_steps) is int
    assert arguments.checkpoint_every == expected
    assert arguments.checkpoint_dir == checkpoint_dir
