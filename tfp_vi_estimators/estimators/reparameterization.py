"""REPARAMETERIZATION: the pathwise (total-derivative) gradient.

```none
z_k = T_phi(eps_k),   loss = f(log mean_k exp(log p(z_k) - log q_phi(z_k)))
grad = d loss / d(phi, theta)   through z and through log q_phi
```

The model parameters theta receive `f'(L) sum_k wt_k grad_theta log p(z_k)`.

#### References

[1] Diederik P. Kingma and Max Welling. Auto-encoding variational Bayes.
    arXiv:1312.6114, 2013.
[2] Yuri Burda, Roger Grosse and Ruslan Salakhutdinov. Importance weighted
    autoencoders. arXiv:1509.00519, 2015.
"""

from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp


class Reparameterization(GradientEstimator):
    """Differentiates `f(L)` through reparameterized samples (IWAE when K > 1)."""

    def per_draw_loss(self, log_densities, discrepancy_fn):
        return discrepancy_fn(
            log_mean_exp(log_densities.target - log_densities.surrogate)
        )
