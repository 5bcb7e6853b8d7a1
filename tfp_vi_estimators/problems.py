"""Small embedded problems shared by the benchmarks, the report and the demo.

Each builder returns a `Problem`: a target, a surrogate with fresh variables,
and what the surrogate's variables are. Nothing is downloaded.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["DecoderProblem", "Problem", "gaussian", "mixed_discrete", "mixture"]


@dataclasses.dataclass
class Problem:
    name: str
    target_log_prob_fn: object
    surrogate: object
    variables: list
    description: str = ""


def gaussian(dim=5, log_evidence=-20.0, seed=0):
    """Correlated Gaussian target (unnormalized, log evidence `log_evidence`),
    full-rank Gaussian surrogate started at N(0, I)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    cov = a @ a.T + 0.5 * np.eye(dim)
    target = tfd.MultivariateNormalTriL(
        rng.normal(size=dim).astype(np.float32),
        np.linalg.cholesky(cov).astype(np.float32),
    )
    loc = tf.Variable(tf.zeros([dim]), name="loc")
    scale_tril = tfp.util.TransformedVariable(
        tf.eye(dim), tfb.FillScaleTriL(), name="scale_tril"
    )
    return Problem(
        f"gaussian-{dim}d",
        lambda z: target.log_prob(z) + log_evidence,
        tfd.MultivariateNormalTriL(loc, scale_tril),
        [loc, *scale_tril.trainable_variables],
        f"{dim}-d correlated Gaussian target, log evidence {log_evidence}",
    )


def mixed_discrete(log_evidence=-15.0):
    """Normal + Bernoulli surrogate; target N(z; mu_b, 1) pi_b."""
    m = tf.Variable(0.2, name="loc")
    log_s = tf.Variable(np.log(0.8).astype(np.float32), name="log_scale")
    logit = tf.Variable(-0.4, name="logit")
    surrogate = tfd.JointDistributionNamed(
        dict(
            z=tfd.Normal(m, tfp.util.DeferredTensor(log_s, tf.exp)),
            b=tfd.Bernoulli(logits=logit, dtype=tf.int32),
        )
    )

    def target_log_prob_fn(z, b):
        on = tf.equal(b, 1)
        mu = tf.where(on, 1.5, -1.0)
        log_pi = tf.where(on, tf.math.log(0.7), tf.math.log(0.3))
        return tfd.Normal(mu, 1.0).log_prob(z) + log_pi + log_evidence

    return Problem(
        "mixed-normal-bernoulli",
        target_log_prob_fn,
        surrogate,
        [m, log_s, logit],
        "JointDistribution surrogate: Normal z and Bernoulli b",
    )


def mixture(num_components=3, log_evidence=-10.0):
    """Mixture-of-Normals target and surrogate (different parameters)."""
    target = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.linspace(-0.5, 0.5, num_components)),
        tfd.Normal(tf.linspace(-3.0, 3.0, num_components), 0.8),
    )
    logits = tf.Variable(tf.zeros([num_components]), name="logits")
    locs = tf.Variable(tf.linspace(-2.0, 2.0, num_components), name="locs")
    scales = tfp.util.TransformedVariable(
        tf.ones([num_components]), tfb.Softplus(), name="scales"
    )
    return Problem(
        f"mixture-{num_components}",
        lambda z: target.log_prob(z) + log_evidence,
        tfd.MixtureSameFamily(
            tfd.Categorical(logits=logits),
            tfd.Normal(locs, scales),
            reparameterize=True,
        ),
        [logits, locs, *scales.trainable_variables],
        f"{num_components}-component Normal mixture target and surrogate",
    )


X_OBSERVED = 1.5
LIKELIHOOD_SCALE = 0.8


class DecoderProblem:
    """z ~ N(0, 1), x | z ~ N(theta z, 0.8^2), x = 1.5; q = N(m, s^2).

    theta is a model ("decoder") parameter inside the target; m and log s are
    the surrogate's parameters. All are batch-shaped `[num_draws]`.
    """

    def __init__(self, num_draws, dtype=tf.float64, loc=0.2, scale=0.6, theta=1.3):
        self.dtype = dtype
        self.loc = tf.Variable(
            tf.fill([num_draws], tf.constant(loc, dtype)), name="loc"
        )
        self.log_scale = tf.Variable(
            tf.fill([num_draws], tf.constant(np.log(scale), dtype)), name="log_scale"
        )
        self.theta = tf.Variable(
            tf.fill([num_draws], tf.constant(theta, dtype)), name="theta"
        )
        self.surrogate = tfd.Normal(
            self.loc, tfp.util.DeferredTensor(self.log_scale, tf.exp)
        )

    @property
    def variables(self):
        return [self.loc, self.log_scale, self.theta]

    def stopped_surrogate(self):
        return tfd.Normal(
            tf.stop_gradient(self.loc), tf.stop_gradient(tf.exp(self.log_scale))
        )

    def target_log_prob(self, z):
        prior = tfd.Normal(tf.constant(0.0, self.dtype), 1.0).log_prob(z)
        likelihood = tfd.Normal(self.theta * z, LIKELIHOOD_SCALE).log_prob(
            tf.constant(X_OBSERVED, self.dtype)
        )
        return prior + likelihood

    def negative_elbo(self):
        """Closed-form negative ELBO (K = 1, kl_reverse), per batch member."""
        m, s, th = self.loc, tf.exp(self.log_scale), self.theta
        half_log_2pi = 0.5 * np.log(2 * np.pi)
        prior = -half_log_2pi - 0.5 * (m**2 + s**2)
        sx2 = LIKELIHOOD_SCALE**2
        likelihood = (
            -half_log_2pi
            - np.log(LIKELIHOOD_SCALE)
            - 0.5 * ((X_OBSERVED - th * m) ** 2 + th**2 * s**2) / sx2
        )
        entropy = 0.5 * np.log(2 * np.pi * np.e) + tf.math.log(s)
        return -(prior + likelihood + entropy)
