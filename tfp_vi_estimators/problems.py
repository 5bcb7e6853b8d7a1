"""Small embedded problems of the report and its benchmarks; nothing is downloaded.

The builders return a `Problem`: a target log-density, a surrogate with fresh
variables, and the variables whose gradients are measured.

- `gaussian(dim, log_evidence, seed)`: a `dim`-d correlated Gaussian target
  (random mean, covariance `A A^T / dim + I / 2`, shifted by `log_evidence`)
  and a full-rank Gaussian surrogate (`loc` and a `FillScaleTriL`
  `scale_tril`) started at `N(0, I)`. The report's variance table uses the
  5-d one, its speed table the 40-d one.
- `mixed_discrete(log_evidence)`: a `JointDistributionNamed` surrogate of a
  Normal `z` and a Bernoulli `b`, target `N(z; mu_b, 1) pi_b`; the variance
  table's problem for `MixedReparameterization`.
- `mixture(num_components, log_evidence)`: a mixture-of-Normals target and a
  reparameterized mixture surrogate with other parameters; the variance
  table's problem for `MixtureStickingTheLanding`.
- `mlp_decoder(latent, data)`: `p(z) p(x | z)` with a `latent`-64-64-`data`
  tanh MLP decoder of Bernoulli logits whose weights are model parameters,
  and a full-rank Gaussian surrogate; the speed table's second problem.
- `logistic_regression_data(num_rows, dim, seed)`: synthetic features, 0/1
  labels and the true weights of a logistic regression; the data of the
  minibatch and multi-worker examples and benchmarks.

`DecoderProblem` is the one-latent model with a decoder parameter of the
report's bias table (and of the statistical tests): `z ~ N(0, 1)`,
`x | z ~ N(theta z, LIKELIHOOD_SCALE^2)`, `x = X_OBSERVED`, `q = N(m, s^2)`,
every parameter batch-shaped `[num_draws]` so that one vectorized call draws
every gradient.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "LIKELIHOOD_SCALE",
    "X_OBSERVED",
    "DecoderProblem",
    "Problem",
    "gaussian",
    "logistic_regression_data",
    "mixed_discrete",
    "mixture",
    "mlp_decoder",
]


@dataclasses.dataclass
class Problem:
    """A target, a surrogate over fresh variables, and those variables."""

    name: str
    target_log_prob_fn: object
    surrogate: object
    variables: list
    description: str = ""


def logistic_regression_data(num_rows, dim, seed=0):
    """Synthetic logistic-regression data: `(x, y, w)`, float32 numpy arrays.

    `x ~ N(0, I)` is `[num_rows, dim]`, the true weights `w ~ N(0, I)` are
    `[dim]` and the labels `y ~ Bernoulli(sigmoid(x w))` are `[num_rows]`.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_rows, dim)).astype(np.float32)
    w = rng.standard_normal(dim).astype(np.float32)
    y = (rng.random(num_rows) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    return x, y, w


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


def mlp_decoder(latent=10, data=100):
    """Bernoulli data from an MLP decoder (model parameters), Gaussian surrogate."""
    decoder = tf.keras.Sequential(
        [
            tf.keras.layers.Dense(64, activation="tanh"),
            tf.keras.layers.Dense(64, activation="tanh"),
            tf.keras.layers.Dense(data),
        ]
    )
    decoder.build((None, latent))
    x = tf.cast(np.random.default_rng(1).random(data) < 0.3, tf.float32)
    loc = tf.Variable(tf.zeros([latent]), name="loc")
    scale_tril = tfp.util.TransformedVariable(
        tf.eye(latent), tfb.FillScaleTriL(), name="scale_tril"
    )

    def target_log_prob_fn(z):
        prior = tfd.MultivariateNormalDiag(tf.zeros([latent])).log_prob(z)
        flat = tf.reshape(z, [-1, latent])
        logits = tf.reshape(decoder(flat), tf.concat([tf.shape(z)[:-1], [-1]], 0))
        likelihood = tf.reduce_sum(tfd.Bernoulli(logits=logits).log_prob(x), -1)
        return prior + likelihood

    return Problem(
        "decoder",
        target_log_prob_fn,
        tfd.MultivariateNormalTriL(loc, scale_tril),
        [loc, *scale_tril.trainable_variables, *decoder.trainable_variables],
        f"p(z) p(x | z) with a {latent}-64-64-{data} MLP decoder (model parameters)",
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
