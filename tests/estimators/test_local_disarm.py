"""Local DisARM: the swapped bounds, unbiasedness against enumeration, variance.

Exact gradients of the two-particle bound come from enumerating every pair of
outcomes of the three-unit Bernoulli model in float64 (`discrete_problems`);
mean gradients are compared with them in standard errors from the same draws
(`stat_helpers.Z_TOLERANCE`, 4.5).
"""

import numpy as np
import pytest
import tensorflow as tf
from discrete_problems import BernoulliProblem, CategoricalProblem
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimators.local_disarm import swapped_log_means

NUM_DRAWS = 20_000


def _loss(problem, estimator, sample_size, importance_sample_size, fn=tve.kl_reverse):
    return lambda: tve.monte_carlo_variational_loss(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=fn,
        gradient_estimator=estimator,
        seed=(5, 6),
    )


def test_swapped_log_means_replace_one_particle_by_the_partners():
    rng = np.random.default_rng(0)
    lw = rng.normal(size=[4, 3, 2])  # S = 4 (two pairs), K = 3, batch 2
    swapped = swapped_log_means(tf.constant(lw)).numpy()
    for i in range(4):
        partner = i ^ 1
        for k in range(3):
            row = lw[i].copy()
            row[k] = lw[partner, k]
            expected = np.log(np.mean(np.exp(row), axis=0))
            np.testing.assert_allclose(swapped[i, k], expected, rtol=1e-12)


@pytest.mark.parametrize("discrepancy", ["kl_reverse", "kl_forward"])
def test_mean_gradient_is_the_enumerated_gradient_of_the_two_particle_bound(
    discrepancy,
):
    problem = BernoulliProblem(NUM_DRAWS)
    fn = getattr(tve, discrepancy)
    draws = per_draw_gradients(
        _loss(problem, estimators.LocalDisARM(), 2, 2, fn), problem.variables
    )[0]
    if discrepancy == "kl_reverse":
        exact = per_draw_gradients(
            lambda: problem.negative_bound(2), problem.variables
        )[0][0]
    else:
        # No enumerated reference for kl_forward here: compare with
        # leave-one-out REINFORCE at K = 2 (unbiased for every discrepancy),
        # a two-sample z-score from independent draws.
        reference = per_draw_gradients(
            _loss(problem, estimators.ScoreFunction("leave_one_out"), 2, 2, fn),
            problem.variables,
        )[0]
        exact = None
    for j in range(3):
        if exact is not None:
            z = z_scores(draws[:, j], exact[j])
        else:
            a, b = draws[:, j], reference[:, j]
            z = (a.mean() - b.mean()) / np.sqrt(a.var() / a.size + b.var() / b.size)
        assert abs(z) < Z_TOLERANCE, (j, z)


def test_local_signal_has_lower_variance_than_disarm_on_the_whole_bound():
    # Same pairs, same 2 x 4 target evaluations: DisARM on the whole K = 4
    # bound scores every particle by f(L_i) - f(L_j); the local signal by what
    # swapping that particle alone does. On this model VIMCO with two
    # independent draws of K = 4 is level with local DisARM (ratios 0.6 to 1.0
    # per logit, printed for reference; docs/estimators.md).
    problem = BernoulliProblem(NUM_DRAWS)
    local, disarm, vimco = (
        per_draw_gradients(_loss(problem, estimator, 2, 4), problem.variables)[0]
        for estimator in (
            estimators.LocalDisARM(),
            estimators.DisARM(),
            tve.GradientEstimators.VIMCO,
        )
    )
    print(
        "variance ratio VIMCO / local DisARM, per logit:", vimco.var(0) / local.var(0)
    )
    ratios = disarm.var(0) / local.var(0)
    print("variance ratio DisARM / local DisARM, per logit:", ratios)
    # Measured 3.9 to 7.8 per logit. F-test per logit with 20 000 draws each:
    # a ratio above 2 is far beyond chance (the log-ratio's standard error
    # is about sqrt(2 / 20 000) = 0.01, plus the heavier tails of these draws).
    assert np.all(ratios > 2.0), ratios


def test_graph_gives_the_eager_values_xla_compiles_and_refusals():
    problem = BernoulliProblem(3)
    loss = _loss(problem, estimators.LocalDisARM(), 2, 3)
    eager = loss()
    graph = tf.function(loss)()
    # The same samples; graph rewrites may round the log-sum-exp differently.
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), rtol=1e-12)

    @tf.function(jit_compile=True)
    def compiled():
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(loss())
        return value, tape.gradient(value, problem.logits)

    value, gradient = compiled()
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient.numpy()))
    with pytest.raises(ValueError, match="importance_sample_size"):
        _loss(problem, estimators.LocalDisARM(), 2, 1)()
    with pytest.raises(ValueError, match="multiple of 2"):
        _loss(problem, estimators.LocalDisARM(), 3, 2)()
    with pytest.raises(ValueError, match="serves tfd.Bernoulli"):
        _loss(CategoricalProblem(1), estimators.LocalDisARM(), 2, 2)()
