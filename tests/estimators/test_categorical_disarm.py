"""CategoricalDisARM: the coupling's importance weight, unbiasedness, variance.

The weight is checked against the coupling enumerated level by level; the
mean gradients against the gradient of the negative ELBO enumerated over
every outcome (float64), within `Z_TOLERANCE` standard errors (4.5, see
`stat_helpers`).
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from discrete_problems import BernoulliProblem, CategoricalProblem, JointProblem
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.estimators.categorical_disarm import pair_weight

NUM_DRAWS = 20_000


def _loss(problem, estimator, sample_size=2, importance_sample_size=1, seed=(5, 6)):
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
    scores = []
    for d, e in zip(draws, exact, strict=True):
        d, e = d.reshape(len(d), -1), e.reshape(len(e), -1)
        scores.extend(z_scores(d[:, j], e[0, j]) for j in range(d.shape[1]))
    return np.array(scores)


def _enumerated_coupling(probs):
    """`p(z, z')` of sorted stick breaking with antithetic uniforms, exactly.

    Each level's pair of answers is (yes, no) or (no, yes) with probability
    p_i each, (no, no) with 1 - 2 p_i, never (yes, yes) (p_i <= 1/2).
    """
    order = np.argsort(probs, kind="stable")
    sorted_probs = probs[order]
    levels = sorted_probs[:-1] / np.cumsum(sorted_probs[::-1])[::-1][:-1]
    num = len(probs)
    joint = np.zeros([num, num])
    answers = {(1, 0): levels, (0, 1): levels, (0, 0): 1 - 2 * levels}
    for path in itertools.product(list(answers), repeat=num - 1):
        probability = np.prod([answers[a][i] for i, a in enumerate(path)])
        chosen = [
            next((i for i, a in enumerate(path) if a[j] == 1), num - 1) for j in (0, 1)
        ]
        joint[order[chosen[0]], order[chosen[1]]] += probability
    return joint


def test_pair_weight_is_the_enumerated_importance_weight():
    rng = np.random.default_rng(1)
    for num_categories in (2, 3, 5):
        logits = rng.normal(size=num_categories) * 1.5
        probs = np.exp(logits) / np.exp(logits).sum()
        joint = _enumerated_coupling(probs)
        np.testing.assert_allclose(joint.sum(1), probs, rtol=1e-12)  # marginals
        np.testing.assert_allclose(joint.sum(0), probs, rtol=1e-12)
        eye = np.eye(num_categories)
        pairs = list(itertools.product(range(num_categories), repeat=2))
        weights = pair_weight(
            tf.constant(np.tile(logits, [len(pairs), 1])),
            tf.constant(eye[[a for a, _ in pairs]]),
            tf.constant(eye[[b for _, b in pairs]]),
        ).numpy()
        for (a, b), weight in zip(pairs, weights, strict=True):
            expected = 0.0 if a == b else probs[a] * probs[b] / joint[a, b]
            np.testing.assert_allclose(weight, expected, rtol=1e-10)


def test_pair_weight_of_two_categories_is_disarms():
    logits = tf.constant([[0.0, 1.3], [0.7, -0.2]], tf.float64)
    one, two = tf.eye(2, dtype=tf.float64), tf.eye(2, dtype=tf.float64)[::-1]
    expected = tf.sigmoid(tf.abs(logits[:, 1] - logits[:, 0]))
    np.testing.assert_allclose(pair_weight(logits, one, two), expected, rtol=1e-12)


def test_bernoulli_surrogate_gives_disarm_exactly():
    problem = BernoulliProblem(5)
    gradients = [
        per_draw_gradients(_loss(problem, estimator), problem.variables)[0]
        for estimator in (estimators.CategoricalDisARM(), estimators.DisARM())
    ]
    np.testing.assert_array_equal(*gradients)


@pytest.mark.parametrize(
    "kind, importance_sample_size",
    [
        ("index", 1),
        ("one_hot", 1),
        pytest.param("index", 2, marks=pytest.mark.slow),
    ],
)
def test_mean_gradient_is_the_enumerated_gradient(kind, importance_sample_size):
    problem = CategoricalProblem(NUM_DRAWS, kind)
    draws = per_draw_gradients(
        _loss(problem, estimators.CategoricalDisARM(), 2, importance_sample_size),
        problem.variables,
    )
    z = _z_scores(problem, draws, importance_sample_size)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.slow
def test_joint_surrogate_keeps_the_path_gradient_of_its_normal_part():
    problem = JointProblem(NUM_DRAWS)
    draws = per_draw_gradients(
        _loss(problem, estimators.CategoricalDisARM()), problem.variables
    )
    z = _z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_variance_is_below_leave_one_out_reinforce_with_two_draws():
    problem = CategoricalProblem(NUM_DRAWS)
    coupled = per_draw_gradients(
        _loss(problem, estimators.CategoricalDisARM()), problem.variables
    )[0].reshape(NUM_DRAWS, -1)
    loo = per_draw_gradients(
        _loss(problem, estimators.ScoreFunction("leave_one_out")), problem.variables
    )[0].reshape(NUM_DRAWS, -1)
    ratios = loo.var(0) / coupled.var(0)
    print("variance ratio (leave-one-out REINFORCE / CategoricalDisARM):", ratios)
    assert np.all(ratios > 1.0), ratios
    assert loo.var(0).sum() > 1.2 * coupled.var(0).sum()


@pytest.mark.slow
def test_xla_mean_gradient_is_the_enumerated_gradient():
    problem = CategoricalProblem(2_000, "one_hot")
    loss = tf.function(
        _loss(problem, estimators.CategoricalDisARM(), seed=(2, 3)), jit_compile=True
    )
    draws = per_draw_gradients(loss, problem.variables)
    z = _z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@mode_parameter
def test_straight_through_and_odd_sample_sizes_are_refused(mode):
    straight = CategoricalProblem(1, "straight_through")
    plain = CategoricalProblem(1)

    def straight_through():
        return _loss(straight, estimators.CategoricalDisARM())()

    def odd():
        return _loss(plain, estimators.CategoricalDisARM(), sample_size=3)()

    assert_raises(
        mode,
        straight_through,
        ValueError,
        "serves tfd.Bernoulli or tfd.Categorical or tfd.OneHotCategorical.*"
        "RelaxedOneHotCategoricalStraightThrough",
    )
    assert_raises(mode, odd, ValueError, "multiple of 2")
