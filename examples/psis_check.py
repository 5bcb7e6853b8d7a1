"""Can the fit be trusted? PSIS k-hat of two surrogates of one posterior.

The posterior of a Bayesian linear regression with correlated inputs is a
Gaussian we know exactly, with strongly correlated coefficients:

```none
w ~ N(0, I_d),   y | w ~ N(X w, noise^2 I_n)
p(w | y) = N(m, C),  C = (I + X^T X / noise^2)^-1,  m = C X^T y / noise^2
```

Two surrogates are fitted by `fit_surrogate_posterior` (the ELBO, DReG
gradients): a mean-field Gaussian, which under-covers the correlated
posterior as reverse-KL fits do, and a full-rank Gaussian, which can match it
exactly. `khat_report` reads PSIS k-hat for each (Yao et al., 2018): the
mean-field fit is flagged, the full-rank one passes. For each surrogate the
script prints the posterior standard deviation of the first coefficient as the
surrogate alone gives it, as PSIS corrects it (`psis_expectation`, with its
Monte Carlo standard error), and the truth.

Short run (what the test suite does):

    python examples/psis_check.py --steps 50 --draws 500

Full run (the numbers in docs/psis.md):

    python examples/psis_check.py
"""

import argparse
import warnings

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import psis

tfd = tfp.distributions
tfb = tfp.bijectors


def regression_posterior(dim=6, num_points=40, noise=0.5, seed=0):
    """`(target_log_prob_fn, exact posterior)` of a correlated regression."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((num_points, 1))
    x = (0.9 * shared + 0.3 * rng.standard_normal((num_points, dim))).astype(np.float32)
    y = (x @ rng.standard_normal(dim) + noise * rng.standard_normal(num_points)).astype(
        np.float32
    )
    precision = np.eye(dim) + x.T @ x / noise**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ x.T @ y / noise**2
    exact = tfd.MultivariateNormalTriL(
        mean.astype(np.float32), np.linalg.cholesky(covariance).astype(np.float32)
    )
    prior = tfd.MultivariateNormalDiag(tf.zeros(dim))

    def target_log_prob_fn(w):
        likelihood = tfd.Normal(tf.linalg.matvec(x, w), noise).log_prob(y)
        return prior.log_prob(w) + tf.reduce_sum(likelihood, axis=-1)

    return target_log_prob_fn, exact


def surrogates(dim):
    """A mean-field and a full-rank Gaussian, trainable."""
    mean_field = tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(0.1 * tf.ones(dim), tfb.Softplus()),
    )
    full_rank = tfd.MultivariateNormalTriL(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(0.1 * tf.eye(dim), tfb.FillScaleTriL()),
    )
    return {"mean-field": mean_field, "full-rank": full_rank}


def main(argv=None):
    """Fits both surrogates and returns `{label: results}` (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=psis.DEFAULT_NUM_DRAWS)
    args = parser.parse_args(argv)
    target_log_prob_fn, exact = regression_posterior()
    true_sd = float(exact.stddev()[0])
    results = {}
    for label, surrogate in surrogates(exact.event_shape[0]).items():
        tve.fit_surrogate_posterior(
            target_log_prob_fn,
            surrogate,
            keras.optimizers.Adam(0.02),
            num_steps=args.steps,
            sample_size=8,
            seed=(1, 2),
            jit_compile=True,
            gradient_estimator=tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", psis.PSISWarning)  # printed below
            pareto_k, message = psis.khat_report(
                target_log_prob_fn, surrogate, args.draws, seed=(3, 4)
            )
        draws = psis.psis_draws(target_log_prob_fn, surrogate, args.draws, (5, 6))
        moments, mcse = psis.psis_expectation(
            lambda w: tf.stack([w[..., 0], tf.square(w[..., 0])], axis=-1), draws
        )
        corrected_sd = float(tf.sqrt(moments[1] - tf.square(moments[0])))
        results[label] = dict(
            pareto_k=pareto_k,
            surrogate_sd=float(surrogate.stddev()[0]),
            corrected_sd=corrected_sd,
            mean_mcse=float(mcse[0]),
            true_sd=true_sd,
        )
        print(f"{label}: {message}")
        print(
            f"  sd of w[0]: surrogate {results[label]['surrogate_sd']:.4f}, "
            f"PSIS {corrected_sd:.4f}, exact {true_sd:.4f}; "
            f"E[w[0]] MCSE {results[label]['mean_mcse']:.4f}"
        )
    return results


if __name__ == "__main__":
    main()
