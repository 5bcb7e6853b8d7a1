"""Sticking the landing for mixture surrogates (Roeder et al., Algorithm 3).

For `q(z) = sum_c pi_c q_c(z)` with reparameterizable components, draw one
reparameterized sample from every component and weight the components'
terms by the live mixture weights; inside, the mixture density is fully
stopped (weights and components):

```none
z_c = T_{phi_c}(eps_c),  c = 1..C
loss = sum_c pi_c * (log q'(z_c) - log p(z_c)),    q' = q with stopped parameters
```

The weights get the exact (stratified) gradient; the components get the path
derivative. The dropped terms are `E_q[grad log q] = 0`, which is why this
holds for the ELBO (`kl_reverse`, K = 1) and not for other discrepancies.
Unlike the other estimators the value is a stratified estimate (one draw per
component), not the plain Monte Carlo one, so it differs from
`REPARAMETERIZATION`'s for the same seed. The target sees samples shaped
`[sample_size, num_components] + batch_shape + event_shape`.

#### References

[1] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing:
    simple, lower-variance gradient estimators for variational inference.
    NeurIPS 2017, Algorithm 3. arXiv:1703.09194.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.estimators.base import GradientEstimator
from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)


class MixtureStickingTheLanding(GradientEstimator):
    """Roeder et al.'s Algorithm 3 for `tfd.MixtureSameFamily` surrogates.

    Needs a `tfd.MixtureSameFamily` surrogate with reparameterized
    components, `importance_sample_size=1` and `discrepancy_fn=kl_reverse`.
    """

    plan = SamplingPlan(
        needs=Needs.FULL,
        layout=Layout.ONE_PER_COMPONENT,
        path_gradient=PathGradient.LIVE,
        densities=frozenset(
            {Density.STOPPED_PARAMETERS, Density.COMPONENT_LOG_WEIGHTS}
        ),
        max_importance_sample_size=1,
        discrepancy_fn=tfp.vi.kl_reverse,
    )

    def per_draw_loss(self, log_densities, discrepancy_fn):
        log_weights = log_densities.target - log_densities.stopped_parameters
        component_weights = tf.exp(log_densities.component_log_weights)
        return tf.reduce_sum(component_weights * discrepancy_fn(log_weights), axis=1)
