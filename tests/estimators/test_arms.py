"""ARMS and DisARM: the formula, unbiasedness against enumeration, variance, modes.

Exact gradients come from enumerating every outcome of small models in float64
(`discrete_problems`); mean gradients are compared with them in standard errors
computed from the same draws (`stat_helpers.Z_TOLERANCE`, 4.5: a false failure
has probability about 7e-6 per comparison).
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from discrete_problems import (
    BernoulliProblem,
    CategoricalProblem,
    JointProblem,
    ParentProblem,
)
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators._internal.discrete_couplings import antithetic_correction
from tfp_vi_estimators.estimators.plan import DiscretePart, LogDensities

tfd = tfp.distributions
NUM_DRAWS = 20_000


def _loss(problem, estimator, sample_size, importance_sample_size=1, seed=(5, 6)):
    return lambda: tve.monte_carlo_variational_loss(
        problem.target_log_prob,
        problem.surrogate,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        gradient_estimator=estimator,
        seed=seed,
    )


def _z_scores(problem, draws, importance_sample_size=1):
    exact = per_draw_gradients(
        lambda: problem.negative_bound(importance_sample_size), problem.variables
    )
    return np.concatenate(
        [
            [z_scores(d[:, j], e.reshape(len(d), -1)[0, j]) for j in range(d.shape[1])]
            for d, e in (
                (d.reshape(len(d), -1), e) for d, e in zip(draws, exact, strict=True)
            )
        ]
    )


def test_per_draw_loss_is_the_arms_formula():
    # S = 4 draws of one group, K = 1, three units; gradient of the summed
    # per-draw losses with respect to the logits, against the paper's formula.
    rng = np.random.default_rng(0)
    n = 4
    logits = rng.normal(size=[n, 1, 3])
    values = (rng.uniform(size=[n, 1, 3]) < 0.5).astype(np.float64)
    log_p = rng.normal(size=[n, 1])
    log_q = rng.normal(size=[n, 1])
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        densities = LogDensities(
            target=tf.constant(log_p),
            surrogate=tf.constant(log_q),
            discrete=(DiscretePart(False, logits_t, tf.constant(values)),),
        )
        per_draw = estimators.ARMS().per_draw_loss(densities, tve.kl_reverse)
        gradient = tape.gradient(tf.reduce_sum(per_draw), logits_t).numpy()
    f = (log_q - log_p)[:, 0]
    np.testing.assert_allclose(per_draw.numpy(), f, rtol=1e-12)
    rho_correction = antithetic_correction(tf.constant(logits), n).numpy()
    p = 1.0 / (1.0 + np.exp(-logits))
    expected = (
        n / (n - 1) * (f - f.mean())[:, None, None] * rho_correction * (values - p)
    )
    np.testing.assert_allclose(gradient, expected, rtol=1e-12)


def test_arms_with_two_draws_is_disarm():
    # ARMS(2) on a real draw equals DisARM's published formula, computed here
    # from the pair the target saw: 1/2 (f(b) - f(b')) (b - b') sigmoid(|a|),
    # plus the direct term mean_i (b_i - sigmoid(a)) of f = log q - log p.
    problem = BernoulliProblem(1)
    seen = []

    def target(b):
        seen.append(b)
        return problem.target_log_prob(b)

    for estimator in (estimators.ARMS(num_draws=2), estimators.DisARM()):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(
                target,
                problem.surrogate,
                sample_size=2,
                gradient_estimator=estimator,
                seed=(1, 7),
            )
        gradient = tape.gradient(loss, problem.logits).numpy()[0]
        b = seen[-1].numpy()[:, 0, :]
        a = problem.logits.numpy()[0]
        p = 1.0 / (1.0 + np.exp(-a))
        log_q = (b * a - np.log1p(np.exp(a))).sum(-1)
        f = log_q - problem.target_log_prob(b).numpy()
        disarm = 0.5 * (f[0] - f[1]) * (b[0] - b[1]) / (1.0 + np.exp(-np.abs(a)))
        np.testing.assert_allclose(gradient, disarm + (b - p).mean(0), rtol=1e-10)
    assert np.any(seen[-1].numpy()[0] != seen[-1].numpy()[1])


@pytest.mark.parametrize(
    "estimator, sample_size, importance_sample_size",
    [
        (estimators.DisARM(), 2, 1),
        pytest.param(estimators.DisARM(), 4, 1, marks=pytest.mark.slow),
        (estimators.ARMS(), 4, 1),
        pytest.param(estimators.ARMS(num_draws=3), 6, 1, marks=pytest.mark.slow),
        pytest.param(estimators.DisARM(), 2, 2, marks=pytest.mark.slow),
    ],
    ids=["disarm", "disarm_two_pairs", "arms_4", "arms_3_twice", "disarm_iwae"],
)
def test_mean_gradient_is_the_enumerated_gradient(
    estimator, sample_size, importance_sample_size
):
    problem = BernoulliProblem(NUM_DRAWS)
    draws = per_draw_gradients(
        _loss(problem, estimator, sample_size, importance_sample_size),
        problem.variables,
    )
    z = _z_scores(problem, draws, importance_sample_size)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.parametrize(
    "named", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["seq", "named"]
)
def test_joint_surrogate_keeps_the_path_gradient_of_its_normal_part(named):
    problem = JointProblem(NUM_DRAWS)
    if named:  # TFP lists the parts in model order (b, a), sorted elsewhere (a, b)
        discrete, normal = problem.surrogate.model
        problem.surrogate = tfd.JointDistributionNamed(dict(b=discrete, a=normal))
        problem.target_log_prob = lambda a, b: JointProblem.target_log_prob(b, a)
    draws = per_draw_gradients(
        _loss(problem, estimators.DisARM(), 2), problem.variables
    )
    z = _z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_disarm_variance_is_below_leave_one_out_reinforce_with_two_draws():
    problem = BernoulliProblem(NUM_DRAWS)
    disarm = per_draw_gradients(
        _loss(problem, estimators.DisARM(), 2), problem.variables
    )
    loo = per_draw_gradients(
        _loss(problem, estimators.ScoreFunction("leave_one_out"), 2), problem.variables
    )
    ratios = loo[0].var(0) / disarm[0].var(0)
    print("variance ratio (leave-one-out REINFORCE / DisARM), per logit:", ratios)
    # F-test per logit: with 20 000 draws each, a ratio above 1.1 has a
    # one-sided p-value below 1e-11 under equal variances.
    assert np.all(ratios > 1.1), ratios


@pytest.mark.slow
def test_arms_variance_is_below_leave_one_out_reinforce_with_four_draws():
    problem = BernoulliProblem(NUM_DRAWS)
    arms = per_draw_gradients(_loss(problem, estimators.ARMS(), 4), problem.variables)
    loo = per_draw_gradients(
        _loss(problem, estimators.ScoreFunction("leave_one_out"), 4), problem.variables
    )
    ratios = loo[0].var(0) / arms[0].var(0)
    print("variance ratio (leave-one-out REINFORCE / ARMS), 4 draws:", ratios)
    assert np.all(ratios > 1.1), ratios


@pytest.mark.parametrize(
    "jit_compile",
    [pytest.param(False, marks=pytest.mark.slow), True],
    ids=["graph", "xla"],
)
def test_compiled_mean_gradient_is_the_enumerated_gradient(jit_compile):
    problem = BernoulliProblem(2_000)
    loss = tf.function(
        _loss(problem, estimators.ARMS(), 4, seed=(2, 3)), jit_compile=jit_compile
    )
    draws = per_draw_gradients(loss, problem.variables)
    z = _z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_graph_mode_gives_the_eager_values():
    problem = BernoulliProblem(3)
    eager = _loss(problem, estimators.DisARM(), 2)()
    graph = tf.function(_loss(problem, estimators.DisARM(), 2))()
    np.testing.assert_array_equal(eager.numpy(), graph.numpy())


@mode_parameter
@pytest.mark.parametrize(
    "surrogate, match",
    [
        (
            lambda: CategoricalProblem(1).surrogate,
            "serves tfd.Bernoulli .* Categorical",
        ),
        (lambda: tfd.Normal(0.0, 1.0), "serves tfd.Bernoulli .* Normal"),
        (
            lambda: tfd.JointDistributionSequential(
                [tfd.Bernoulli(0.3), tfd.Poisson(2.0)]
            ),
            "part 1 of `surrogate_posterior` is Poisson",
        ),
    ],
    ids=["categorical", "normal", "poisson_part"],
)
def test_unsupported_surrogates_are_refused_naming_what_is_served(
    mode, surrogate, match
):
    def call():
        return tve.monte_carlo_variational_loss(
            lambda *z: tf.zeros([2]),
            surrogate(),
            sample_size=2,
            gradient_estimator=estimators.DisARM(),
        )

    assert_raises(mode, call, ValueError, match)


@mode_parameter
@pytest.mark.parametrize(
    "estimator, sample_size, match",
    [
        (estimators.DisARM(), 3, "multiple of 2"),
        (estimators.ARMS(), 1, "sample_size"),
        (estimators.ARMS(num_draws=3), 4, "multiple of 3"),
    ],
)
def test_sample_sizes_that_do_not_fill_groups_are_refused(
    mode, estimator, sample_size, match
):
    problem = BernoulliProblem(1)

    def call():
        return tve.monte_carlo_variational_loss(
            problem.target_log_prob,
            problem.surrogate,
            sample_size=sample_size,
            gradient_estimator=estimator,
        )

    assert_raises(mode, call, ValueError, match)


def test_discrete_part_depending_on_other_parts_is_refused():
    problem = ParentProblem(1)
    with pytest.raises(ValueError, match="depends on other parts.*RELAX"):
        _loss(problem, estimators.DisARM(), 2)()


def test_bad_num_draws_and_rqmc_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        estimators.ARMS(num_draws=1)
    with pytest.raises(TypeError, match="num_draws"):
        estimators.ARMS(num_draws=2.0)
    problem = BernoulliProblem(1)
    with pytest.raises(ValueError, match="sampling"):
        tve.monte_carlo_variational_loss(
            problem.target_log_prob,
            problem.surrogate,
            sample_size=2,
            gradient_estimator=estimators.DisARM(),
            sampling="rqmc",
        )
