"""The golden-value matrix: estimators x surrogates x discrepancies x sizes.

Each case builds fresh variables from fixed numbers, evaluates the loss and its
gradients with a fixed seed, and returns them as float32 arrays. The values
were recorded before the redesign of issue 12 (`python -m golden.record` from
`tests/`, written to `values.json`); `test_golden.py` demands the same bits.
"""

import itertools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough

tfd, tfb = tfp.distributions, tfp.bijectors

SEED = (17, 5)
SIZES = ((3, 1), (2, 3))
DISCREPANCIES = {"kl_reverse": tve.kl_reverse, "kl_forward": tve.kl_forward}


def _var(value, name):
    return tf.Variable(np.asarray(value, np.float32), name=name)


def _scalar_normal():
    q = tfd.Normal(_var(0.3, "loc"), tfp.util.TransformedVariable(1.2, tfb.Softplus()))
    return q, lambda theta: lambda z: tfd.Normal(theta, 2.0).log_prob(z)


def _batched_normal():
    q = tfd.Normal(_var([0.3, -0.5], "loc"), _var([1.1, 0.7], "scale"))
    return q, lambda theta: lambda z: tfd.Normal(theta, [2.0, 1.5]).log_prob(z)


def _full_rank():
    tril = _var([[1.0, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.1, 1.2]], "tril")
    q = tfd.MultivariateNormalTriL(_var([0.1, -0.2, 0.4], "loc"), tril)

    def target(theta):
        return lambda z: tfd.MultivariateNormalDiag(
            theta * tf.ones(3), [1.0, 2.0, 0.5]
        ).log_prob(z)

    return q, target


def _joint():
    loc = _var(0.2, "loc")
    scale = _var(0.9, "scale")
    q = tfd.JointDistributionNamed(
        dict(a=tfd.Normal(loc, 1.0), b=lambda a: tfd.Normal(a * 0.5, scale))
    )

    def target(theta):
        return lambda a, b: (
            tfd.Normal(theta, 1.0).log_prob(a) + tfd.Normal(a, 2.0).log_prob(b)
        )

    return q, target


def _mixed_joint():
    loc = _var(0.2, "loc")
    logit = _var(-0.4, "logit")
    q = tfd.JointDistributionSequential(
        [
            tfd.Normal(loc, 1.0),
            tfd.Bernoulli(logits=logit, dtype=tf.float32),
        ]
    )

    def target(theta):
        return lambda z, c: (
            tfd.Normal(theta + c, 1.0).log_prob(z)
            + tfd.Bernoulli(probs=0.3, dtype=tf.float32).log_prob(c)
        )

    return q, target


def _mixture():
    q = tfd.MixtureSameFamily(
        tfd.Categorical(logits=_var([0.1, -0.3, 0.5], "logits")),
        tfd.Normal(_var([-1.0, 0.2, 1.5], "locs"), _var([0.5, 0.8, 1.1], "scales")),
    )
    return q, lambda theta: lambda z: tfd.Normal(theta, 1.5).log_prob(z)


def _flow():
    q = tfd.TransformedDistribution(
        tfd.Normal(0.0, 1.0),
        tfb.Chain([tfb.Shift(_var(0.4, "shift")), tfb.Scale(_var(1.3, "scale"))]),
    )
    return q, lambda theta: lambda z: tfd.Normal(theta, 2.0).log_prob(z)


def _maf():
    made = tfb.AutoregressiveNetwork(params=2, hidden_units=[4], event_shape=[2])
    made.build([None, 2])
    rng = np.random.default_rng(0)
    for w in made.weights:
        w.assign(0.3 * rng.standard_normal(w.shape).astype(np.float32))
    q = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2)),
        tfb.MaskedAutoregressiveFlow(made),
    )

    def target(theta):
        return lambda z: tfd.MultivariateNormalDiag(theta * tf.ones(2)).log_prob(z)

    return q, target


def _straight_through():
    q = RelaxedBernoulliStraightThrough(0.5, logits=_var([0.3, -0.8], "logits"))

    def target(theta):
        return lambda z: -theta * (z - 0.4) ** 2

    return q, target


SURROGATES = {
    "scalar": _scalar_normal,
    "batched": _batched_normal,
    "full_rank": _full_rank,
    "joint": _joint,
    "mixed_joint": _mixed_joint,
    "mixture": _mixture,
    "flow": _flow,
    "maf": _maf,
    "straight_through": _straight_through,
}


def _callable_baseline():
    b = _var(0.5, "baseline")
    return (lambda: b), [b]


ESTIMATORS = {
    "SCORE_FUNCTION": lambda: (tve.GradientEstimators.SCORE_FUNCTION, []),
    "REPARAMETERIZATION": lambda: (tve.GradientEstimators.REPARAMETERIZATION, []),
    "DOUBLY_REPARAMETERIZED": lambda: (
        tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
        [],
    ),
    "VIMCO": lambda: (tve.GradientEstimators.VIMCO, []),
    "tfp_vi_DOUBLY_REPARAMETERIZED": lambda: (
        tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED,
        [],
    ),
    "dr_partial": lambda: (estimators.DoublyReparameterized(score_weight=0.5), []),
    "sf_leave_one_out": lambda: (estimators.ScoreFunction("leave_one_out"), []),
    "sf_moving_average": lambda: (estimators.ScoreFunction("moving_average"), []),
    "sf_callable": lambda: (lambda b: (estimators.ScoreFunction(b[0]), b[1]))(
        _callable_baseline()
    ),
    "mixed": lambda: (estimators.MixedReparameterization(), []),
    "mixed_leave_one_out": lambda: (
        estimators.MixedReparameterization("leave_one_out"),
        [],
    ),
    "mixture_stl": lambda: (estimators.MixtureStickingTheLanding(), []),
}


def case_names():
    return [
        f"{e}-{s}-{d}-S{ss}K{k}"
        for e, s, d, (ss, k) in itertools.product(
            ESTIMATORS, SURROGATES, DISCREPANCIES, SIZES
        )
    ]


def run_case(name, mode):
    """(loss, [gradients]) as float32 numpy arrays, or None if the case is refused.

    `mode` is "eager" or "graph". The moving-average baseline learns only in
    training steps, so its case runs two steps of `value_and_gradients` (the
    second with the average of the first) and returns the second's values.
    """
    est_name, surr_name, disc_name, sizes = name.split("-")
    sample_size, importance_sample_size = (int(x) for x in sizes[1:].split("K"))
    q, make_target = SURROGATES[surr_name]()
    theta = _var(0.25, "theta")
    target = make_target(theta)
    estimator, extra = ESTIMATORS[est_name]()
    variables = list(q.trainable_variables) + [theta] + extra
    kwargs = dict(
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=DISCREPANCIES[disc_name],
        gradient_estimator=estimator,
    )
    try:
        tve.variational_loss.check_arguments(target, q, **kwargs)
    except (ValueError, TypeError):
        return None

    def loss_and_grads(seed):
        with tf.GradientTape() as tape:
            loss = tve.monte_carlo_variational_loss(target, q, seed=seed, **kwargs)
        grads = tape.gradient(loss, variables)
        grads = [
            tf.zeros_like(v) if g is None else g
            for g, v in zip(grads, variables, strict=True)
        ]
        return loss, grads

    if est_name == "sf_moving_average":
        return _two_training_steps(target, q, variables, kwargs, mode)
    fn = loss_and_grads if mode == "eager" else tf.function(loss_and_grads)
    loss, grads = fn(tf.constant(SEED, tf.int32))
    return np.asarray(loss, np.float32), [np.asarray(g, np.float32) for g in grads]


def _two_training_steps(target, q, variables, kwargs, mode):
    def step(seed, state):
        loss, grads, state = tve.value_and_gradients(
            target, q, variables, state, seed=seed, **kwargs
        )
        grads = [
            tf.zeros_like(v) if g is None else g
            for g, v in zip(grads, variables, strict=True)
        ]
        return loss, grads, state

    fn = step if mode == "eager" else tf.function(step)
    state = None
    for i in range(2):
        loss, grads, state = fn(tf.constant([SEED[0], SEED[1] + i], tf.int32), state)
    return np.asarray(loss, np.float32), [np.asarray(g, np.float32) for g in grads]
