"""Problems only the tests use, on top of the report's `tfp_vi_estimators.problems`.

`DecoderProblem` adds to the report's one-latent decoder model the closed-form
negative ELBO that the statistical tests compare the estimators against.
"""

import numpy as np
import tensorflow as tf

from tfp_vi_estimators import problems
from tfp_vi_estimators.problems import LIKELIHOOD_SCALE, X_OBSERVED

__all__ = ["LIKELIHOOD_SCALE", "X_OBSERVED", "DecoderProblem"]


class DecoderProblem(problems.DecoderProblem):
    """`tfp_vi_estimators.problems.DecoderProblem` with its exact negative ELBO."""

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
