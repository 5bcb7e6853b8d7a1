"""StructuredScoreFunction: unbiased against enumerated gradients; lower variance.

Per-draw gradients come from one vectorized call (see stat_helpers): the
surrogate's parameters are batch-shaped `[NUM_DRAWS]`, each batch member with
its own copy and its own `sample_size` draws, so the gradient of the summed
loss with respect to member b is the estimate of draw b, and the members are
independent. The reference is the exact gradient of the negative ELBO
computed by enumerating every outcome of the small discrete models. Tolerance
`Z_TOLERANCE` standard errors of the mean, estimated from the same draws.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE, per_draw_gradients, z_scores

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

tfd = tfp.distributions
NUM_DRAWS = 4000
SAMPLE_SIZE = 4
F64 = tf.float64


def _bern(logits):
    return tfd.Bernoulli(logits=tf.cast(logits, F64), dtype=F64)


def chain_model():
    """a -> b -> c (c also depends on a), x | c observed."""
    return tfd.JointDistributionNamed(
        dict(
            a=_bern(0.3),
            b=lambda a: _bern(1.5 * a - 0.5),
            c=lambda a, b: _bern(b - a + 0.2),
            x=lambda c: tfd.Normal(2.0 * c - 1.0, tf.constant(1.0, F64)),
        )
    ).experimental_pin(x=tf.constant(0.7, F64))


class ChainSurrogate:
    """q(a) q(b | a) q(c): a graph unlike the model's."""

    def __init__(self, num_draws):
        full = lambda v: tf.Variable(tf.fill([num_draws], tf.constant(v, F64)))  # noqa: E731
        self.variables = [full(0.1), full(-0.3), full(0.8), full(0.4)]
        la, lb, wb, lc = self.variables
        self.surrogate = tfd.JointDistributionNamed(
            dict(
                a=_bern(la),
                b=lambda a: _bern(lb + wb * a),
                c=_bern(lc),
            )
        )

    def as_coroutine(self):
        """The same surrogate as a JointDistributionCoroutine."""
        la, lb, wb, lc = self.variables
        root = tfd.JointDistributionCoroutine.Root

        @tfd.JointDistributionCoroutine
        def surrogate():
            a = yield root(_bern(la).copy(name="a"))
            yield _bern(lb + wb * a).copy(name="b")
            yield root(_bern(lc).copy(name="c"))

        return surrogate

    def enumerated_negative_elbo(self, model):
        """`E_q[log q - log p]` summed over all 8 outcomes, shape `[num_draws]`."""
        total = 0.0
        for a, b, c in itertools.product([0.0, 1.0], repeat=3):
            value = {
                n: tf.fill([self.variables[0].shape[0]], tf.constant(v, F64))
                for n, v in zip("abc", (a, b, c), strict=True)
            }
            log_q = self.surrogate.log_prob(value)
            total += tf.exp(log_q) * (log_q - model.unnormalized_log_prob(value))
        return total


def _loss(model, surrogate, estimator, seed=(4, 2), sample_size=SAMPLE_SIZE):
    return lambda: tve.monte_carlo_variational_loss(
        model.unnormalized_log_prob,
        surrogate,
        sample_size=sample_size,
        gradient_estimator=estimator,
        seed=seed,
    )


def _gradients_in(mode, loss, variables):
    def gradients():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(loss())
        return tape.gradient(total, variables)

    if mode != "eager":
        gradients = tf.function(gradients, jit_compile=mode == "xla")
    return [g.numpy() for g in gradients()]


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_chain_mean_gradient_equals_enumerated_gradient(mode):
    model, problem = chain_model(), ChainSurrogate(NUM_DRAWS)
    estimator = estimators.StructuredScoreFunction(model)
    draws = _gradients_in(
        mode, _loss(model, problem.surrogate, estimator), problem.variables
    )
    exact = per_draw_gradients(
        lambda: problem.enumerated_negative_elbo(model), problem.variables
    )
    z = np.array([z_scores(d, e[0]) for d, e in zip(draws, exact, strict=True)])
    print("z-scores against the enumerated gradient:", z)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


OBSERVED = (0.5, -1.0, 1.2)


def plated_model():
    """g -> z_n -> x_n, n = 1..3: one binary assignment per data point."""
    offsets = tf.constant([0.3, -0.2, 0.1], F64)
    return tfd.JointDistributionNamed(
        dict(
            g=_bern(-0.2),
            z=lambda g: tfd.Independent(_bern(g[..., None] - 0.5 + offsets), 1),
            x=lambda z: tfd.Independent(
                tfd.Normal(2.0 * z - 1.0, tf.constant(1.0, F64)), 1
            ),
        )
    ).experimental_pin(x=tf.constant(OBSERVED, F64))


class PlatedSurrogate:
    """q(g) prod_n q(z_n | g)."""

    def __init__(self, num_draws):
        n = len(OBSERVED)
        self.variables = [
            tf.Variable(tf.fill([num_draws], tf.constant(0.2, F64))),
            tf.Variable(tf.tile(tf.constant([[0.4, -0.6, 0.1]], F64), [num_draws, 1])),
            tf.Variable(tf.fill([num_draws], tf.constant(-0.7, F64))),
        ]
        lg, lz, w = self.variables
        self.surrogate = tfd.JointDistributionNamed(
            dict(
                g=_bern(lg),
                z=lambda g: tfd.Independent(_bern(lz + (w * g)[..., None]), 1),
            )
        )
        self.num_points = n

    def enumerated_negative_elbo(self, model):
        """`E_q[log q - log p]` summed over all 16 outcomes, `[num_draws]`."""
        num_draws = self.variables[0].shape[0]
        total = 0.0
        for g, *z in itertools.product([0.0, 1.0], repeat=1 + self.num_points):
            value = dict(
                g=tf.fill([num_draws], tf.constant(g, F64)),
                z=tf.tile(tf.constant([z], F64), [num_draws, 1]),
            )
            log_q = self.surrogate.log_prob(value)
            total += tf.exp(log_q) * (log_q - model.unnormalized_log_prob(value))
        return total


def test_plated_mean_gradient_equals_enumerated_gradient():
    model, problem = plated_model(), PlatedSurrogate(NUM_DRAWS)
    estimator = estimators.StructuredScoreFunction(model, plate=("z", "x"))
    draws = _gradients_in(
        "function", _loss(model, problem.surrogate, estimator), problem.variables
    )
    exact = per_draw_gradients(
        lambda: problem.enumerated_negative_elbo(model), problem.variables
    )
    z = np.array(
        [
            z_scores(d[:, i] if d.ndim > 1 else d, e[0, i] if e.ndim > 1 else e[0])
            for d, e in zip(draws, exact, strict=True)
            for i in range(d.shape[1] if d.ndim > 1 else 1)
        ]
    )
    print("z-scores against the enumerated gradient:", z)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


NUM_POINTS, NUM_CLUSTERS = 100, 3


def mixture_model(data):
    """mu_k ~ N(0, 5^2); z_n ~ Categorical(uniform); x_n | z_n, mu ~ N(mu_{z_n}, 1)."""

    def likelihood(z, mu):
        loc = tf.gather(mu, z, axis=-1, batch_dims=len(z.shape) - 1)
        return tfd.Independent(tfd.Normal(loc, tf.constant(1.0, F64)), 1)

    return tfd.JointDistributionNamed(
        dict(
            mu=tfd.Sample(tfd.Normal(tf.constant(0.0, F64), 5.0), NUM_CLUSTERS),
            z=tfd.Sample(
                tfd.Categorical(logits=tf.zeros([NUM_CLUSTERS], F64)), NUM_POINTS
            ),
            x=likelihood,
        )
    ).experimental_pin(x=data)


class MixtureSurrogate:
    """q(mu) prod_n q(z_n): Normal means (reparameterized), one Categorical per point."""

    def __init__(self, num_draws, rng):
        logits = rng.normal(size=[NUM_POINTS, NUM_CLUSTERS])
        self.logits = tf.Variable(
            tf.tile(tf.constant(logits[None], F64), [num_draws, 1, 1])
        )
        self.loc = tf.Variable(
            tf.tile(tf.constant([[-3.5, 0.5, 3.5]], F64), [num_draws, 1])
        )
        self.surrogate = tfd.JointDistributionNamed(
            dict(
                mu=tfd.Independent(tfd.Normal(self.loc, tf.constant(0.3, F64)), 1),
                z=tfd.Independent(tfd.Categorical(logits=self.logits), 1),
            )
        )


def mixture_data(rng, scale=1.0):
    labels = rng.integers(NUM_CLUSTERS, size=NUM_POINTS)
    centres = np.array([-4.0, 0.0, 4.0])[labels]
    return labels, tf.constant(centres + scale * rng.normal(size=NUM_POINTS), F64)


def test_mixture_assignment_gradient_variance_10x_below_score_function():
    """The variance of each arm's estimates (200 independent ones, 4 draws each)."""
    rng = np.random.default_rng(0)
    _, data = mixture_data(rng)
    model, problem = mixture_model(data), MixtureSurrogate(200, rng)
    arms = {
        "structured": estimators.StructuredScoreFunction(model, plate=("z", "x")),
        "SCORE_FUNCTION": tve.GradientEstimators.SCORE_FUNCTION,
        "leave_one_out": estimators.ScoreFunction("leave_one_out"),
    }
    variance = {}
    for name, estimator in arms.items():
        loss = _loss(model, problem.surrogate, estimator)
        (grads,) = _gradients_in("function", loss, [problem.logits])
        # Summed over the N x C logits: the total variance of one draw's estimate.
        variance[name] = grads.var(axis=0, ddof=1).sum()
    ratios = {n: v / variance["structured"] for n, v in variance.items()}
    print("assignment-logit gradient variance / structured's:", ratios)
    assert ratios["SCORE_FUNCTION"] > 10.0, ratios
    assert ratios["leave_one_out"] > 10.0, ratios


X_MIXED = 0.4


def mixed_model():
    """z -> w -> x: a binary site with a Normal child, x observed."""
    one = tf.constant(1.0, F64)
    return tfd.JointDistributionNamed(
        dict(
            z=_bern(0.3),
            w=lambda z: tfd.Normal(2.0 * z - 1.0, one),
            x=lambda w: tfd.Normal(w, one),
        )
    ).experimental_pin(x=tf.constant(X_MIXED, F64))


class MixedSurrogate:
    """q(z) q(w | z), w reparameterized (its dict key sorts before z's)."""

    def __init__(self, num_draws):
        full = lambda v: tf.Variable(tf.fill([num_draws], tf.constant(v, F64)))  # noqa: E731
        self.variables = [full(-0.2), full(0.3), full(0.5), full(np.log(0.7))]
        logit, m, d, log_s = self.variables
        self.surrogate = tfd.JointDistributionNamed(
            dict(
                w=lambda z: tfd.Normal(m + d * z, tf.exp(log_s)),
                z=_bern(logit),
            )
        )

    def exact_negative_elbo(self):
        """Closed form: Gaussian expectations given z, enumerated over z."""
        logit, m, d, log_s = self.variables
        s2, half_log_2pi = tf.exp(2.0 * log_s), 0.5 * np.log(2.0 * np.pi)
        total = 0.0
        for z in (0.0, 1.0):
            log_qz = _bern(logit).log_prob(tf.constant(z, F64))
            mean = m + d * z
            expected = _bern(0.3).log_prob(tf.constant(z, F64)) - log_qz
            expected += -half_log_2pi - 0.5 * ((mean - (2.0 * z - 1.0)) ** 2 + s2)
            expected += -half_log_2pi - 0.5 * ((X_MIXED - mean) ** 2 + s2)
            expected += half_log_2pi + 0.5 + log_s  # the entropy of q(w | z)
            total += tf.exp(log_qz) * -expected
        return total


def test_mixed_mean_gradient_equals_exact_gradient():
    model, problem = mixed_model(), MixedSurrogate(NUM_DRAWS)
    estimator = estimators.StructuredScoreFunction(model)
    draws = _gradients_in(
        "function", _loss(model, problem.surrogate, estimator), problem.variables
    )
    exact = per_draw_gradients(problem.exact_negative_elbo, problem.variables)
    z = np.array([z_scores(d, e[0]) for d, e in zip(draws, exact, strict=True)])
    print("z-scores against the exact gradient:", z)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def _refused(surrogate, estimator, **kwargs):
    return lambda: tve.monte_carlo_variational_loss(
        chain_model().unnormalized_log_prob,
        surrogate,
        sample_size=2,
        gradient_estimator=estimator,
        seed=(1, 2),
        **kwargs,
    )


@mode_parameter
def test_surrogate_sites_not_the_model_latent_sites_are_refused(mode):
    surrogate = tfd.JointDistributionNamed(dict(a=_bern(0.0), b=_bern(0.0)))
    estimator = estimators.StructuredScoreFunction(chain_model())
    call = _refused(surrogate, estimator)
    assert_raises(mode, call, ValueError, r"latent \(unpinned\) sites")


@mode_parameter
def test_surrogate_that_is_not_a_joint_is_refused(mode):
    estimator = estimators.StructuredScoreFunction(chain_model())
    call = _refused(_bern(tf.zeros([3])), estimator)
    assert_raises(mode, call, TypeError, "JointDistribution `surrogate_posterior`")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(importance_sample_size=2), "importance_sample_size=1"),
        (dict(discrepancy_fn=tfp.vi.kl_forward), "kl_reverse"),
    ],
)
def test_only_the_elbo_is_served(kwargs, match):
    estimator = estimators.StructuredScoreFunction(chain_model())
    with pytest.raises(ValueError, match=match):
        _refused(ChainSurrogate(1).surrogate, estimator, **kwargs)()


def test_plain_function_model_is_refused_with_the_alternative():
    with pytest.raises(TypeError, match="`model` must be a tfd.JointDistribution"):
        estimators.StructuredScoreFunction(chain_model().unnormalized_log_prob)


@pytest.mark.parametrize(
    ("plate", "error", "match"),
    [
        ("z", TypeError, "sequence of site names"),
        (("z", "y"), ValueError, r"\['y'\], which are not sites"),
    ],
)
def test_bad_plate_is_refused(plate, error, match):
    with pytest.raises(error, match=match):
        estimators.StructuredScoreFunction(plated_model(), plate=plate)


def test_plate_site_without_an_event_axis_is_refused():
    estimator = estimators.StructuredScoreFunction(plated_model(), plate=("g", "x"))
    surrogate = PlatedSurrogate(1).surrogate
    loss = _loss(plated_model(), surrogate, estimator)
    with pytest.raises(ValueError, match="`plate` site 'g' must be a tfd.Independent"):
        loss()


def test_bad_baseline_is_refused():
    with pytest.raises(ValueError, match="'leave_one_out' or None"):
        estimators.StructuredScoreFunction(chain_model(), baseline="moving_average")


def chain_coroutine_model():
    """`chain_model` as a coroutine: its graph is derived by tracing."""

    @tfd.JointDistributionCoroutine
    def model():
        a = yield _bern(0.3).copy(name="a")
        b = yield _bern(1.5 * a - 0.5).copy(name="b")
        c = yield _bern(b - a + 0.2).copy(name="c")
        yield tfd.Normal(2.0 * c - 1.0, tf.constant(1.0, F64), name="x")

    return model.experimental_pin(x=tf.constant(0.7, F64))


def chain_sequential_model():
    """`chain_model` as a JointDistributionSequential (graph: resolve_graph)."""
    return tfd.JointDistributionSequential(
        [
            _bern(0.3).copy(name="a"),
            lambda a: _bern(1.5 * a - 0.5).copy(name="b"),
            lambda b, a: _bern(b - a + 0.2).copy(name="c"),
            lambda c: tfd.Normal(2.0 * c - 1.0, tf.constant(1.0, F64), name="x"),
        ]
    ).experimental_pin(x=tf.constant(0.7, F64))


@pytest.mark.parametrize(
    ("make_model", "coroutine_surrogate"),
    [
        (chain_sequential_model, False),
        (chain_coroutine_model, False),
        (chain_coroutine_model, True),
    ],
    ids=["sequential_model", "coroutine_model", "coroutine_surrogate"],
)
def test_other_joint_kinds_mean_gradient_equals_enumerated_gradient(
    make_model, coroutine_surrogate
):
    model, problem = make_model(), ChainSurrogate(NUM_DRAWS)
    surrogate = problem.as_coroutine() if coroutine_surrogate else problem.surrogate
    estimator = estimators.StructuredScoreFunction(model)
    draws = _gradients_in(
        "function", _loss(model, surrogate, estimator), problem.variables
    )
    exact = per_draw_gradients(
        lambda: problem.enumerated_negative_elbo(chain_model()), problem.variables
    )
    z = np.array([z_scores(d, e[0]) for d, e in zip(draws, exact, strict=True)])
    print("z-scores against the enumerated gradient:", z)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.slow
def test_fit_under_xla_recovers_the_mixture_assignments():
    """Separated clusters: the fitted q(z_n) puts its mode on point n's cluster."""
    rng = np.random.default_rng(1)
    labels, data = mixture_data(rng, scale=0.5)
    model, problem = mixture_model(data), MixtureSurrogate(1, rng)
    problem.logits.assign(tf.zeros_like(problem.logits))
    tve.fit_surrogate_posterior(
        model.unnormalized_log_prob,
        problem.surrogate,
        tf.keras.optimizers.Adam(0.1),
        num_steps=150,
        sample_size=4,
        jit_compile=True,
        seed=(6, 1),
        gradient_estimator=estimators.StructuredScoreFunction(model, plate=("z", "x")),
    )
    recovered = np.mean(np.argmax(problem.logits.numpy()[0], axis=-1) == labels)
    print("assignments recovered:", recovered)
    assert recovered > 0.95, recovered


def test_plate_sites_of_different_lengths_are_refused():
    model = tfd.JointDistributionNamed(
        dict(
            z=tfd.Sample(_bern(0.0), 3),
            x=lambda z: tfd.Independent(tfd.Normal(tf.reduce_sum(z, -1, True), 1.0), 1),
        )
    ).experimental_pin(x=tf.zeros([2], F64))
    surrogate = tfd.JointDistributionNamed(dict(z=tfd.Sample(_bern(0.0), 3)))
    loss = _loss(
        model, surrogate, estimators.StructuredScoreFunction(model, ("z", "x"))
    )
    with pytest.raises(ValueError, match="share the length of their leading event"):
        loss()
