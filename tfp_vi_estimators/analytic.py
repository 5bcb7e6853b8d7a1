"""Negative ELBOs with a closed-form entropy or KL term (Roeder et al. eqs. 2-3).

```none
elbo_with_analytic_entropy:  loss = -(1/S sum_s log p(z_s) + H[q])
elbo_with_analytic_kl:       loss = -(1/S sum_s log p(x | z_s) - KL(q || prior))
z_s ~ q, reparameterized
```

Both are unbiased estimates of the negative ELBO with reparameterization
gradients. Computing part of the objective exactly removes that part's Monte
Carlo noise, but, as Roeder et al. show, not the score-function term hidden
in the remaining part: near the optimum the fully Monte Carlo form with the
path-derivative estimator (`DOUBLY_REPARAMETERIZED`) has lower variance,
tending to zero. These losses are here to make that comparison.

#### References

[1] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing:
    simple, lower-variance gradient estimators for variational inference.
    NeurIPS 2017. arXiv:1703.09194.
[2] Diederik P. Kingma and Max Welling. Auto-encoding variational Bayes.
    arXiv:1312.6114, 2013.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators._internal.reparameterization import is_fully_reparameterized
from tfp_vi_estimators.targets import call_target

__all__ = ["elbo_with_analytic_entropy", "elbo_with_analytic_kl"]


def _check(fn_name, fn, surrogate_posterior, sample_size, seed):
    checks.check_callable(fn_name, fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    checks.check_positive_integer("sample_size", sample_size)
    checks.check_seed(seed)
    if not is_fully_reparameterized(surrogate_posterior):
        raise ValueError(
            "`surrogate_posterior` must be fully reparameterized for a "
            "closed-form ELBO with reparameterization gradients; got "
            f"reparameterization_type={surrogate_posterior.reparameterization_type}."
        )


def _mean_over_samples(fn, surrogate_posterior, sample_size, seed):
    sample_seed, fn_seed = tfp.random.split_seed(seed, 2)
    z = surrogate_posterior.sample(sample_size, seed=sample_seed)
    return tf.reduce_mean(call_target(fn, z, fn_seed), axis=0)


def elbo_with_analytic_entropy(
    target_log_prob_fn, surrogate_posterior, sample_size=1, seed=None, name=None
):
    """Negative ELBO `-(E_q[log p(z)] + H[q])` with the entropy in closed form.

    Args:
      target_log_prob_fn: callable, the (unnormalized) log joint, called with
        the samples as `monte_carlo_variational_loss` calls it.
      surrogate_posterior: fully reparameterized `tfd.Distribution` with an
        analytic `entropy()`.
      sample_size: positive integer, Monte Carlo draws for `E_q[log p]`.
      seed: PRNG seed, split as in `monte_carlo_variational_loss`.
      name: name scope. Default value: `'elbo_with_analytic_entropy'`.

    Returns:
      `Tensor` of shape `batch_shape`.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument.
    """
    _check(
        "target_log_prob_fn", target_log_prob_fn, surrogate_posterior, sample_size, seed
    )
    checks.check_name(name)
    with tf.name_scope(name or "elbo_with_analytic_entropy"):
        expected_log_p = _mean_over_samples(
            target_log_prob_fn, surrogate_posterior, sample_size, seed
        )
        return -(expected_log_p + surrogate_posterior.entropy())


def elbo_with_analytic_kl(
    log_likelihood_fn, prior, surrogate_posterior, sample_size=1, seed=None, name=None
):
    """Negative ELBO `-(E_q[log p(x | z)] - KL(q || prior))`, KL in closed form.

    Args:
      log_likelihood_fn: callable `log p(x | z)`, called with the samples as
        `monte_carlo_variational_loss` calls its target.
      prior: `tfd.Distribution` with a registered KL from the surrogate.
      surrogate_posterior: fully reparameterized `tfd.Distribution`.
      sample_size: positive integer, draws for `E_q[log p(x | z)]`.
      seed: PRNG seed (split as in `monte_carlo_variational_loss`).
      name: name scope. Default value: `'elbo_with_analytic_kl'`.

    Returns:
      The negative ELBO, a `Tensor` of shape `batch_shape`; bad arguments
      raise `TypeError` or `ValueError` naming the argument.
    """
    _check(
        "log_likelihood_fn", log_likelihood_fn, surrogate_posterior, sample_size, seed
    )
    checks.check_distribution("prior", prior)
    checks.check_name(name)
    with tf.name_scope(name or "elbo_with_analytic_kl"):
        expected_log_likelihood = _mean_over_samples(
            log_likelihood_fn, surrogate_posterior, sample_size, seed
        )
        kl = tfp.distributions.kl_divergence(surrogate_posterior, prior)
        return -(expected_log_likelihood - kl)
