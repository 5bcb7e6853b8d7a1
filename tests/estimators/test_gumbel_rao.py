"""Gumbel-Rao: its bias is the straight-through bias; its error is lower.

Stated bias: E[GumbelRao(M)] = E[straight-through] for every M. For the
three-unit Bernoulli problem (`discrete_problems.BernoulliProblem`, logistic
relaxation at temperature t = 0.5, f = log q(h) - log p(h) with the pmf
written linearly in h) that expectation has a one-dimensional integral per
unit, computed here by the trapezoid rule in float64:

```none
E[g_d] = E[h_d - p_d] + E[df/dh_d] E_L[sigmoid'((a_d + L) / t) / t]
       = 0 + (a_d - C_d - BETA p_other(d)) I(a_d),     L ~ Logistic(0, 1)
```

(the hard value of the other unit is independent of unit d's noise). Mean
gradients are compared with it in standard errors (`Z_TOLERANCE` = 4.5), and
its distance to the exact gradient (enumerated) is the bias.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from discrete_problems import (
    BERNOULLI_LOGITS,
    BETA,
    F64,
    BernoulliProblem,
    C,
    CategoricalProblem,
    JointProblem,
)
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough

tfd = tfp.distributions
NUM_DRAWS = 20_000
TEMPERATURE = 0.5


def _loss(problem, estimator, sample_size=1, seed=(5, 6)):
    return lambda: tve.monte_carlo_variational_loss(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=sample_size,
        gradient_estimator=estimator,
        seed=seed,
    )


def straight_through_expectation():
    """The straight-through (hence Gumbel-Rao) mean gradient, by quadrature."""
    a = np.array(BERNOULLI_LOGITS)
    p = 1.0 / (1.0 + np.exp(-a))
    noise = np.linspace(-60.0, 60.0, 400_001)
    density = np.exp(-np.abs(noise)) / (1.0 + np.exp(-np.abs(noise))) ** 2
    other = (p[1], p[0], 0.0)
    means = []
    for d in range(3):
        soft = 1.0 / (1.0 + np.exp(-(a[d] + noise) / TEMPERATURE))
        slope = np.trapezoid(density * soft * (1 - soft) / TEMPERATURE, noise)
        means.append((a[d] - C[d] - BETA * other[d]) * slope)
    return np.array(means)


def _gradients(problem, estimator, seed=(5, 6)):
    return per_draw_gradients(_loss(problem, estimator, seed=seed), problem.variables)


def test_bias_is_the_straight_through_bias_for_every_num_samples():
    problem = BernoulliProblem(NUM_DRAWS, straight_through=True, temperature=0.5)
    exact = per_draw_gradients(problem.negative_bound, problem.variables)[0][0]
    expected = straight_through_expectation()
    print("exact gradient:", exact, "straight-through mean:", expected)
    for num_samples in (1, 10):
        draws = _gradients(problem, estimators.GumbelRao(num_samples))[0]
        z = np.array([z_scores(draws[:, d], expected[d]) for d in range(3)])
        assert np.all(np.abs(z) < Z_TOLERANCE), (num_samples, z)
        # ... and that mean is biased: the first logit's bias is 0.023, about
        # six standard errors of these draws.
        bias_z = z_scores(draws[:, 0], exact[0])
        assert abs(bias_z) > Z_TOLERANCE, bias_z
    np.testing.assert_allclose(expected - exact, [0.0231, -0.0031, -0.0095], atol=5e-4)


def _paired_mse_gap(problem, exact, seed=(5, 6)):
    """Squared errors of GumbelRao(1) minus GumbelRao(10), per draw and logit.

    The same seed gives both the same hard values (the relaxations differ),
    so the difference is paired.
    """
    plain = _gradients(problem, estimators.GumbelRao(1), seed)[0]
    averaged = _gradients(problem, estimators.GumbelRao(10), seed)[0]
    n = len(plain)
    plain, averaged = plain.reshape(n, -1), averaged.reshape(n, -1)
    exact = exact.reshape(1, -1)
    return ((plain - exact) ** 2 - (averaged - exact) ** 2).sum(1), plain, averaged


def test_mean_squared_error_is_below_plain_straight_through():
    problem = BernoulliProblem(NUM_DRAWS, straight_through=True, temperature=0.5)
    exact = per_draw_gradients(problem.negative_bound, problem.variables)[0][0]
    gap, plain, averaged = _paired_mse_gap(problem, exact)
    print(
        "MSE, straight-through vs Gumbel-Rao(10):",
        ((plain - exact) ** 2).sum(1).mean(),
        ((averaged - exact) ** 2).sum(1).mean(),
    )
    assert z_scores(gap) > Z_TOLERANCE


@pytest.mark.slow
def test_categorical_mean_is_unchanged_and_error_lower():
    problem = CategoricalProblem(NUM_DRAWS, "straight_through", temperature=0.5)
    exact = per_draw_gradients(problem.negative_bound, problem.variables)[0][0]
    gap, plain, averaged = _paired_mse_gap(problem, exact)
    z = (plain - averaged).mean(0) / np.sqrt(
        plain.var(0) / len(plain) + averaged.var(0) / len(averaged)
    )
    assert np.all(np.abs(z) < Z_TOLERANCE), z
    assert z_scores(gap) > Z_TOLERANCE


def _straight_through_joint(problem):
    """JointProblem with its Bernoulli root swapped for the straight-through one."""
    return tfd.JointDistributionSequential(
        [
            tfd.Independent(
                RelaxedBernoulliStraightThrough(
                    tf.constant(TEMPERATURE, F64), logits=problem.logits
                ),
                1,
            ),
            lambda b: tfd.Normal(
                problem.loc + 0.5 * tf.reduce_sum(b, -1), tf.exp(problem.log_scale)
            ),
        ]
    )


def test_joint_surrogate_normal_part_gradient_is_exact_and_flows_through_samples():
    # Given the hard values, the Normal part's parameters get their pathwise
    # gradient, which is unbiased; the Normal's samples are the first pass's
    # (same seed), their gradient goes through the Rao-Blackwellised values.
    problem = JointProblem(NUM_DRAWS)
    problem.surrogate = _straight_through_joint(problem)
    draws = _gradients(problem, estimators.GumbelRao(5))
    exact = per_draw_gradients(problem.negative_bound, problem.variables)
    for d, e in zip(draws[1:], exact[1:], strict=True):
        assert abs(z_scores(d, e[0])) < Z_TOLERANCE
    small = JointProblem(2)
    small.surrogate = _straight_through_joint(small)
    seen = []

    def target(b, x):
        seen.append(tf.reduce_sum(x))
        return small.target_log_prob(b, x)

    with tf.GradientTape() as tape:
        tve.monte_carlo_variational_loss(
            target,
            small.surrogate,
            sample_size=2,
            gradient_estimator=estimators.GumbelRao(3),
            seed=(1, 1),
        )
    through_values = tape.gradient(seen[0], small.logits)
    assert through_values is not None and np.all(through_values.numpy() != 0.0)


def test_xla_runs_and_matches_the_quadrature_mean():
    problem = BernoulliProblem(4_000, straight_through=True, temperature=0.5)
    loss = tf.function(
        _loss(problem, estimators.GumbelRao(4), seed=(2, 3)), jit_compile=True
    )
    draws = per_draw_gradients(loss, problem.variables)[0]
    expected = straight_through_expectation()
    z = np.array([z_scores(draws[:, d], expected[d]) for d in range(3)])
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@mode_parameter
def test_plain_discrete_surrogates_are_refused_naming_the_straight_through_ones(mode):
    problem = BernoulliProblem(1)

    def call():
        return _loss(problem, estimators.GumbelRao(2))()

    assert_raises(
        mode,
        call,
        ValueError,
        "GumbelRao serves RelaxedBernoulliStraightThrough or "
        "RelaxedOneHotCategoricalStraightThrough .* Bernoulli",
    )


def test_bad_num_samples_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        estimators.GumbelRao(0)
    with pytest.raises(TypeError, match="num_samples"):
        estimators.GumbelRao(2.5)
