"""KL against posterior-mean error: why a lower-variance gradient can give worse means.

IllConditionedGaussian (Inference Gym, d = 100), mean-field Gaussian surrogate,
Adam(0.02), 8 draws a step, 2,000 steps, XLA, one fit per seed and estimator.
For each final surrogate it prints the exact excess KL(q || p) over the best
mean-field Gaussian (loc = m, var = 1 / diag(Lambda)), the standardized mean
error (median over coordinates of |loc - m| / sd_p) and the location part of
the KL, 0.5 (loc - m)^T Lambda (loc - m). Medians over seeds.

The fit minimizes KL, which weighs location errors by the precision Lambda;
posterior means read per coordinate weigh them by the marginal standard
deviations. An estimator with less gradient noise can win the first and lose
the second (docs/choosing.md).

    python benchmarks/kl_against_mean_error.py [--seeds 5]
"""

import argparse

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators

tfd, tfb = tfp.distributions, tfp.bijectors

ARMS = {
    "REPARAMETERIZATION": lambda: tve.GradientEstimators.REPARAMETERIZATION,
    "DOUBLY_REPARAMETERIZED": lambda: tve.GradientEstimators.DOUBLY_REPARAMETERIZED,
    "adaptive": lambda: estimators.DoublyReparameterized(score_weight="adaptive"),
}


def _target():
    from inference_gym import using_tensorflow as gym  # noqa: PLC0415

    p = gym.targets.IllConditionedGaussian()._gaussian  # noqa: SLF001
    scale = np.asarray(p.scale.to_dense(), np.float64)
    covariance = scale @ scale.T
    return p, np.asarray(p.mean(), np.float64), covariance


def _kl(loc, sd, mean, covariance, precision):
    """KL(N(loc, diag(sd^2)) || N(mean, covariance)), exactly."""
    difference = loc - mean
    return 0.5 * (
        np.sum(np.diag(precision) * sd**2)
        + difference @ precision @ difference
        - len(mean)
        + np.linalg.slogdet(covariance)[1]
        - np.sum(np.log(sd**2))
    )


def _fit(p, arm, seed):
    dim = p.event_shape[0]
    q = tfd.MultivariateNormalDiag(
        tf.Variable(tf.zeros(dim)),
        tfp.util.TransformedVariable(tf.ones(dim), tfb.Softplus()),
    )
    tve.fit_surrogate_posterior(
        p.log_prob,
        q,
        tf.keras.optimizers.Adam(0.02),
        2000,
        sample_size=8,
        gradient_estimator=ARMS[arm](),
        jit_compile=True,
        seed=(seed, 11),
        progress=False,
    )
    return np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    p, mean, covariance = _target()
    precision = np.linalg.inv(covariance)
    optimum = _kl(mean, 1 / np.sqrt(np.diag(precision)), mean, covariance, precision)
    sd_p = np.sqrt(np.diag(covariance))
    for arm in ARMS:
        rows = []
        for seed in range(args.seeds):
            loc, sd = _fit(p, arm, seed)
            difference = loc - mean
            rows.append(
                (
                    _kl(loc, sd, mean, covariance, precision) - optimum,
                    np.median(np.abs(difference) / sd_p),
                    0.5 * difference @ precision @ difference,
                )
            )
        excess, error, location = np.median(np.array(rows), axis=0)
        print(
            f"{arm:24s} excess KL {excess:.3f}  mean error {error:.4f}  "
            f"location part of KL {location:.3f}"
        )


if __name__ == "__main__":
    main()
