"""gradient_moments: streamed chunks equal a plain loop; tables; bad input."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

import tfp_vi_estimators as tve
from tfp_vi_estimators import diagnostics, problems

tfd = tfp.distributions


def _problem():
    loc = tf.Variable([0.1, -0.3])
    q = tfd.MultivariateNormalDiag(loc, [1.0, 0.5])
    target = tfd.MultivariateNormalDiag([1.0, 2.0], [0.5, 2.0]).log_prob
    return loc, q, target


@pytest.mark.parametrize(
    "estimator", list(tve.GradientEstimators), ids=lambda e: e.name
)
def test_moments_equal_those_of_a_plain_loop(estimator):
    loc, q, target = _problem()

    def loss(seed):
        return tve.monte_carlo_variational_loss(
            target,
            q,
            sample_size=3,
            importance_sample_size=2,
            gradient_estimator=estimator,
            seed=seed,
        )

    seeds = tfp.random.split_seed((4, 2), n=50)
    draws = []
    for s in seeds:
        with tf.GradientTape() as tape:
            value = loss(s)
        draws.append(tape.gradient(value, loc).numpy())
    draws = np.array(draws)
    # One chunk of all 50 draws (inside tf.function), and 7 chunks of 7 plus a
    # chunk of 1 (eagerly): the same per-draw seeds, so the same moments.
    one_chunk = tf.function(
        lambda: diagnostics.gradient_moments(loss, [loc], 50, (4, 2))
    )()
    streamed = diagnostics.gradient_moments(loss, [loc], 50, (4, 2), chunk_size=7)
    for moments in (one_chunk, streamed):
        np.testing.assert_allclose(moments.mean[0], draws.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(moments.variance[0], draws.var(0, ddof=1), rtol=1e-4)
        np.testing.assert_allclose(
            moments.snr[0], np.abs(draws.mean(0)) / draws.std(0, ddof=1), rtol=1e-4
        )


@pytest.mark.parametrize("sizes", [(1, 99), (40, 60), (99, 1), (50, 50)])
def test_merged_moments_equal_the_moments_of_all_draws(sizes):
    rng = np.random.default_rng(3)
    # Large mean, small spread: naive sums of squares would lose digits here.
    draws = 1e4 + rng.normal(size=(sum(sizes), 3))
    first, second = draws[: sizes[0]], draws[sizes[0] :]
    merged = diagnostics.merge_moments(
        diagnostics.moments_of_draws(first), diagnostics.moments_of_draws(second)
    )
    assert float(merged.count) == len(draws)
    np.testing.assert_allclose(merged.mean, draws.mean(0), rtol=1e-14)
    np.testing.assert_allclose(merged.variance, draws.var(0, ddof=1), rtol=1e-9)
    direct = diagnostics.moments_of_draws(draws.T, axis=1)
    np.testing.assert_allclose(direct.m2, merged.m2, rtol=1e-9)


def test_compare_estimators_table_shows_path_derivative_advantage():
    problem = problems.gaussian(dim=3)
    rows = diagnostics.compare_estimators(
        problem.target_log_prob_fn,
        problem.surrogate,
        [
            tve.GradientEstimators.SCORE_FUNCTION,
            tve.GradientEstimators.REPARAMETERIZATION,
        ],
        num_draws=200,
        seed=(1, 1),
        sample_size=8,
    )
    table = diagnostics.format_table(rows)
    assert table.count("\n") == 1 + len(rows)
    variance = {(r["estimator"], r["variable"]): r["total_variance"] for r in rows}
    assert variance[("REPARAMETERIZATION", "loc")] < variance[("SCORE_FUNCTION", "loc")]
    # Each row is the moments of the loss itself on the same per-draw seeds.
    variables = list(problem.surrogate.trainable_variables)
    for row in rows:
        estimator = tve.GradientEstimators[row["estimator"]]
        moments = diagnostics.gradient_moments(
            lambda s, e=estimator: tve.monte_carlo_variational_loss(
                problem.target_log_prob_fn,
                problem.surrogate,
                sample_size=8,
                gradient_estimator=e,
                seed=s,
            ),
            variables,
            num_draws=200,
            seed=(1, 1),
        )
        index = [v.name.split(":")[0] for v in variables].index(row["variable"])
        np.testing.assert_allclose(
            row["total_variance"],
            float(tf.reduce_sum(moments.variance[index])),
            rtol=1e-4,
        )
        assert f"{row['total_variance']:.4g}" in table


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(loss_fn=3), TypeError, "loss_fn"),
        (dict(variables=tf.Variable(1.0)), TypeError, "variables"),
        (dict(variables=[]), TypeError, "variables"),
        (dict(variables=[tf.constant(1.0)]), TypeError, "variables"),
        (dict(num_draws=1), ValueError, "num_draws"),
        (dict(num_draws=10.0), TypeError, "num_draws"),
        (dict(seed="x"), TypeError, "seed"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(chunk_size=2.5), TypeError, "chunk_size"),
        (dict(name=3), TypeError, "name"),
    ],
)
@mode_parameter
def test_bad_arguments(kwargs, error, match, mode):
    args = dict(
        loss_fn=lambda s: tf.constant(0.0), variables=[tf.Variable(1.0)], num_draws=4
    )
    args.update(kwargs)
    assert_raises(mode, lambda: diagnostics.gradient_moments(**args), error, match)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            dict(gradient_estimators="REPARAMETERIZATION"),
            TypeError,
            "gradient_estimators",
        ),
        (dict(gradient_estimators=[]), TypeError, "gradient_estimators"),
        (dict(gradient_estimators=["reparam"]), TypeError, "gradient_estimator"),
        (
            # The second estimator is bad: refused before the first one runs.
            dict(
                gradient_estimators=[
                    tve.GradientEstimators.REPARAMETERIZATION,
                    tve.GradientEstimators.VIMCO,
                ]
            ),
            ValueError,
            "importance_sample_size",
        ),
        (dict(target_log_prob_fn=None), TypeError, "target_log_prob_fn"),
        (dict(surrogate_posterior="q"), TypeError, "surrogate_posterior"),
        (dict(num_draws=1), ValueError, "num_draws"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(variables=[1.0]), TypeError, "variables"),
        (dict(sample_size=0), ValueError, "sample_size"),
        (dict(sampel_size=4), TypeError, "sampel_size"),
        (dict(loss_fn=3), TypeError, "loss_fn"),
        (dict(chunk_size=-1), ValueError, "chunk_size"),
    ],
)
@mode_parameter
def test_compare_estimators_bad_arguments(kwargs, error, match, mode):
    problem = problems.gaussian(dim=2)
    args = dict(
        target_log_prob_fn=problem.target_log_prob_fn,
        surrogate_posterior=problem.surrogate,
        gradient_estimators=[tve.GradientEstimators.REPARAMETERIZATION],
        num_draws=4,
    )
    args.update(kwargs)
    assert_raises(mode, lambda: diagnostics.compare_estimators(**args), error, match)
