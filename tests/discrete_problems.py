"""Small discrete-latent problems with exact gradients, for the discrete estimators.

Every problem is batch-shaped `[num_draws]`: each batch member has its own copy
of the parameters (all equal) and its own draws, so the gradient of the summed
loss with respect to member b is the estimate of member b's draws (as in
`stat_helpers`). The exact negative ELBO (or IWAE bound) is computed in float64
by enumerating every outcome (and, where a Normal part is integrated, in closed
form or by Gauss-Hermite quadrature exact to float64 rounding for these smooth
integrands), so its gradient is the reference for the z-tests.
"""

import itertools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.distributions import (
    RelaxedBernoulliStraightThrough,
    RelaxedOneHotCategoricalStraightThrough,
)

tfd = tfp.distributions
F64 = tf.float64

# Bernoulli problem: log p(b) = sum_d C_d b_d + BETA b_0 b_1 + OFFSET.
BERNOULLI_LOGITS = (0.4, -1.3, 1.1)
C = (1.5, -0.8, 0.3)
BETA = -1.7
OFFSET = -4.0


def _full(values, num_draws):
    values = tf.constant(values, F64)
    return tf.Variable(tf.broadcast_to(values, [num_draws, *values.shape]))


def bernoulli_log_p(b):
    """`log p(b)` for 0/1 values `[..., 3]` (any float dtype)."""
    b = tf.cast(b, F64)
    return (
        tf.reduce_sum(b * tf.constant(C, F64), -1)
        + BETA * b[..., 0] * b[..., 1]
        + OFFSET
    )


class BernoulliProblem:
    """Three Bernoulli units, mean field; `straight_through` swaps in the relaxed
    straight-through Bernoulli (same hard law) at `temperature`."""

    def __init__(self, num_draws, straight_through=False, temperature=0.5):
        self.logits = _full(BERNOULLI_LOGITS, num_draws)
        self.variables = [self.logits]
        if straight_through:
            inner = RelaxedBernoulliStraightThrough(
                tf.constant(temperature, F64), logits=self.logits
            )
        else:
            inner = tfd.Bernoulli(logits=self.logits, dtype=F64)
        self.surrogate = tfd.Independent(inner, 1)

    target_log_prob = staticmethod(bernoulli_log_p)

    def negative_bound(self, importance_sample_size=1):
        """Exact `E[-log mean_k p(b_k) / q(b_k)]`, per member, by enumeration."""
        outcomes = tf.constant(list(itertools.product([0.0, 1.0], repeat=3)), F64)
        return _enumerated_bound(
            outcomes, self._log_q, bernoulli_log_p, importance_sample_size
        )

    def _log_q(self, outcomes):  # [O, 3] -> [O, N]
        b = outcomes[:, tf.newaxis, :]
        return tf.reduce_sum(b * self.logits - tf.math.softplus(self.logits), -1)


def _enumerated_bound(outcomes, log_q_fn, log_p_fn, importance_sample_size):
    """`sum over K-tuples of outcomes of prod_k q(o_k) * -log mean_k w(o_k)`."""
    log_q = log_q_fn(outcomes)  # [O, N]
    log_w = log_p_fn(outcomes)[:, tf.newaxis] - log_q
    if importance_sample_size == 1:
        return -tf.reduce_sum(tf.exp(log_q) * log_w, axis=0)
    assert importance_sample_size == 2
    joint = log_q[:, tf.newaxis] + log_q[tf.newaxis, :]  # [O, O, N]
    shape = tf.shape(joint)
    first = tf.broadcast_to(log_w[:, tf.newaxis], shape)
    second = tf.broadcast_to(log_w[tf.newaxis, :], shape)
    log_mean = tf.reduce_logsumexp(tf.stack([first, second]), axis=0) - np.log(2.0)
    return -tf.reduce_sum(tf.exp(joint) * log_mean, axis=[0, 1])


# Categorical problem: two sites of three categories,
# log p(z) = W[0, z_0] + W[1, z_1] + GAMMA 1[z_0 == z_1] + OFFSET.
CATEGORICAL_LOGITS = ((0.2, -0.9, 1.4), (-0.3, 0.8, 0.1))
W = ((0.5, -1.0, 1.2), (1.1, 0.2, -0.6))
GAMMA = 1.3


def categorical_log_p(z):
    """`log p(z)` for indices `[..., 2]` or one-hot `[..., 2, 3]`."""
    if z.dtype.is_floating:
        one_hot = tf.cast(z, F64)
    else:
        one_hot = tf.one_hot(z, 3, dtype=F64)
    site_terms = tf.reduce_sum(one_hot * tf.constant(W, F64), [-1, -2])
    same = tf.reduce_sum(one_hot[..., 0, :] * one_hot[..., 1, :], -1)
    return site_terms + GAMMA * same + OFFSET


class CategoricalProblem:
    """Two categorical sites; `kind` is 'index', 'one_hot' or 'straight_through'."""

    def __init__(self, num_draws, kind="index", temperature=0.5):
        self.logits = _full(CATEGORICAL_LOGITS, num_draws)
        self.variables = [self.logits]
        if kind == "index":
            inner = tfd.Categorical(logits=self.logits)
        elif kind == "one_hot":
            inner = tfd.OneHotCategorical(logits=self.logits, dtype=F64)
        else:
            inner = RelaxedOneHotCategoricalStraightThrough(
                tf.constant(temperature, F64), logits=self.logits
            )
        self.surrogate = tfd.Independent(inner, 1)

    target_log_prob = staticmethod(categorical_log_p)

    def negative_bound(self, importance_sample_size=1):
        outcomes = tf.constant(list(itertools.product(range(3), repeat=2)), tf.int32)
        one_hot = tf.one_hot(outcomes, 3, dtype=F64)  # [9, 2, 3]

        def log_q(_):
            log_probs = tf.math.log_softmax(self.logits)  # [N, 2, 3]
            return tf.reduce_sum(one_hot[:, tf.newaxis] * log_probs, [-1, -2])

        return _enumerated_bound(
            one_hot, log_q, categorical_log_p, importance_sample_size
        )


# Joint problem: b ~ Bernoulli(l) (2 units), x | b ~ Normal(m + 0.5 sum(b), s);
# log p(b, x) = sum_j D_j b_j + log N(x; MU0 + MU1 b_0 - 0.3 b_1, 1) + OFFSET.
D = (0.7, -0.4)
MU0, MU1 = -0.5, 1.2


class JointProblem:
    """A discrete root with a reparameterized child; exact negative ELBO."""

    def __init__(self, num_draws):
        self.logits = _full((0.3, -0.6), num_draws)
        self.loc = _full(0.2, num_draws)
        self.log_scale = _full(np.log(0.7), num_draws)
        self.variables = [self.logits, self.loc, self.log_scale]
        self.surrogate = tfd.JointDistributionSequential(
            [
                tfd.Independent(tfd.Bernoulli(logits=self.logits), 1),
                lambda b: tfd.Normal(
                    self.loc + 0.5 * tf.reduce_sum(tf.cast(b, F64), -1),
                    tf.exp(self.log_scale),
                ),
            ]
        )

    @staticmethod
    def target_log_prob(b, x):
        b = tf.cast(b, F64)
        mean = MU0 + MU1 * b[..., 0] - 0.3 * b[..., 1]
        return (
            tf.reduce_sum(b * tf.constant(D, F64), -1)
            + tfd.Normal(mean, tf.constant(1.0, F64)).log_prob(x)
            + OFFSET
        )

    def negative_bound(self, importance_sample_size=1):
        assert importance_sample_size == 1
        total = 0.0
        s = tf.exp(self.log_scale)
        for b in itertools.product([0.0, 1.0], repeat=2):
            bt = tf.constant(b, F64)
            log_q_b = tf.reduce_sum(
                bt * self.logits - tf.math.softplus(self.logits), -1
            )
            m_b = self.loc + 0.5 * sum(b)
            mean = MU0 + MU1 * b[0] - 0.3 * b[1]
            e_log_q_x = -0.5 * np.log(2 * np.pi * np.e) - tf.math.log(s)
            e_log_p_x = -0.5 * np.log(2 * np.pi) - 0.5 * ((m_b - mean) ** 2 + s**2)
            inner = log_q_b + e_log_q_x - (float(np.dot(b, D)) + e_log_p_x + OFFSET)
            total += tf.exp(log_q_b) * inner
        return total


class ParentProblem:
    """A reparameterized root with a discrete child: x ~ N(m, s),
    b | x ~ Bernoulli(l + x); log p(x, b) = log N(x; 0.3, 1) + E0 b + E1 b x.
    The exact negative ELBO integrates x by Gauss-Hermite quadrature."""

    E0, E1 = -0.6, 0.9

    def __init__(self, num_draws):
        self.logit = _full(-0.2, num_draws)
        self.loc = _full(0.4, num_draws)
        self.log_scale = _full(np.log(0.8), num_draws)
        self.variables = [self.logit, self.loc, self.log_scale]
        self.surrogate = tfd.JointDistributionSequential(
            [
                tfd.Normal(self.loc, tfp.util.DeferredTensor(self.log_scale, tf.exp)),
                lambda x: tfd.Bernoulli(logits=self.logit + x, dtype=F64),
            ]
        )

    @classmethod
    def target_log_prob(cls, x, b):
        b = tf.cast(b, F64)
        return (
            tfd.Normal(tf.constant(0.3, F64), 1.0).log_prob(x)
            + cls.E0 * b
            + cls.E1 * b * x
        )

    def negative_bound(self, importance_sample_size=1):
        assert importance_sample_size == 1
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        weights = tf.constant(weights / np.sqrt(2 * np.pi), F64)[:, tf.newaxis]
        s = tf.exp(self.log_scale)
        x = self.loc + s * tf.constant(nodes, F64)[:, tf.newaxis]  # [Q, N]
        log_q_x = tfd.Normal(self.loc, s).log_prob(x)
        total = 0.0
        for b in (0.0, 1.0):
            log_q_b = tfd.Bernoulli(logits=self.logit + x, dtype=F64).log_prob(b)
            log_p = self.target_log_prob(x, tf.constant(b, F64))
            total += tf.exp(log_q_b) * (log_q_b + log_q_x - log_p)
        return tf.reduce_sum(weights * total, axis=0)
