"""`monte_carlo_variational_loss`: a drop-in for `tfp.vi`'s, with correct gradients."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import targets
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimators.base import LossEvaluation
from tfp_vi_estimators.loss_config import LossConfig, check_arguments

__all__ = [
    "check_arguments",
    "evaluate",
    "evaluate_loss",
    "monte_carlo_variational_loss",
]


def monte_carlo_variational_loss(
    target_log_prob_fn,
    surrogate_posterior,
    sample_size=1,
    importance_sample_size=1,
    discrepancy_fn=kl_reverse,
    use_reparameterization=None,
    gradient_estimator=None,
    stopped_surrogate_posterior=None,
    seed=None,
    name=None,
    *,
    sampling="iid",
):
    """Monte Carlo approximation of a Csiszar f-divergence variational loss.

    Same parameters, defaults, samples and loss values as
    `tfp.vi.monte_carlo_variational_loss`; what differs is the gradient where
    `tfp.vi`'s is biased or missing. The loss is

    ```none
    z[s, k] ~ q,  s = 1..S (sample_size),  k = 1..K (importance_sample_size)
    lw[s, k] = log p(z[s, k]) - log q(z[s, k])
    loss     = 1/S sum_s f(log 1/K sum_k exp(lw[s, k]))
    ```

    With `f = kl_reverse` (the default) and K = 1 this is the negative ELBO;
    with K > 1 the negative importance-weighted bound (IWAE). The gradient
    estimator changes the gradient, never the value:

    - `REPARAMETERIZATION`: the pathwise total derivative.
    - `DOUBLY_REPARAMETERIZED`: path derivatives, unbiased for every
      discrepancy and for parameters inside `target_log_prob_fn`:
      `grad_phi = sum_k stop((f'(L) - f''(L)) wt_k^2) d lw'_k/dz dz/dphi`,
      `grad_theta = sum_k stop(f'(L) wt_k) grad_theta log p(z_k)`; one target
      evaluation per particle; `stopped_surrogate_posterior` optional.
    - `SCORE_FUNCTION`: REINFORCE, for any K (`tfp.vi` refuses K > 1).
    - `VIMCO`: score function with leave-one-out baselines, K >= 2.

    Args:
      target_log_prob_fn: Python callable taking the samples as `tfp.vi`
        passes them (`fn(*z)` for a list or tuple, `fn(**z)` for a dict,
        `fn(z)` for a Tensor) and returning the target log-density shaped
        `[sample_size * importance_sample_size] + batch_shape`
        (`[importance_sample_size, sample_size] + batch_shape` for VIMCO, as in
        `tfp.vi`). If it accepts a `seed` keyword it is passed one.
      surrogate_posterior: `tfp.distributions.Distribution` (including
        `JointDistribution*`, flows and distributions built from encoder
        outputs).
      sample_size: positive integer S, the number of independent draws.
        Default value: `1`.
      importance_sample_size: positive integer K, particles per draw for the
        importance-weighted bound. Default value: `1`.
      discrepancy_fn: elementwise Csiszar function in log space.
        Default value: `kl_reverse`.
      use_reparameterization: deprecated (as in `tfp.vi`); `True` means
        REPARAMETERIZATION, `False` SCORE_FUNCTION. Contradicting
        `gradient_estimator` is an error.
      gradient_estimator: a `GradientEstimators` member (a `tfp.vi` member is
        accepted too), a configured `tfp_vi_estimators.estimators` object, or
        `None` to choose as `tfp.vi` does: REPARAMETERIZATION for a fully
        reparameterized surrogate, else SCORE_FUNCTION with a warning.
      stopped_surrogate_posterior: optional copy of the surrogate with stopped
        parameters, used as given by DOUBLY_REPARAMETERIZED. When `None` it is
        built automatically (see `tfp_vi_estimators.stopped_surrogate`).
      seed: PRNG seed; see `tfp.random.sanitize_seed`. Split as in `tfp.vi`
        into a sampling seed and a seed for `target_log_prob_fn`.
      name: name scope for the ops. Default value: `None`
        (`'monte_carlo_variational_loss'`).
      sampling: keyword-only. `'iid'` draws independent samples, as `tfp.vi`.
        `'rqmc'` (or `quasi_monte_carlo.QuasiMonteCarlo()`) draws the
        surrogate's base noise from a randomly digitally shifted Sobol' point
        set and pushes it through the surrogate's own reparameterization
        (Buchholz et al. 2018, [5]): every draw is still distributed as the
        surrogate, so the loss and its gradient stay unbiased, and for smooth
        targets their variance falls faster than `1 / sample_size`. For
        REPARAMETERIZATION and DOUBLY_REPARAMETERIZED on location-scale and
        bijector-transformed surrogates (see `docs/quasi_monte_carlo.md`);
        others are refused with a `ValueError`. Default value: `'iid'`.

    Returns:
      loss: `Tensor` of shape `batch_shape`, the Monte Carlo estimate.

    Raises:
      TypeError: for an argument of the wrong kind (a non-callable target, a
        surrogate that is not a distribution, a non-integer sample size, an
        unknown estimator, a malformed seed).
      ValueError: for a value out of range (sample sizes below 1, VIMCO with
        fewer than two importance samples), an estimator that differentiates
        samples on a surrogate that is not fully reparameterized, a stopped
        surrogate whose event shape differs, or a target that returns the
        wrong shape or dtype.

    #### References

    [1] Ali, Syed Mumtaz, and Samuel D. Silvey. A general class of
        coefficients of divergence of one distribution from another. JRSS B,
        28(1), 1966.
    [2] Yuri Burda, Roger Grosse and Ruslan Salakhutdinov. Importance weighted
        autoencoders. ICLR 2016. arXiv:1509.00519.
    [3] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison.
        Doubly reparameterized gradient estimators for Monte Carlo objectives.
        ICLR 2019. arXiv:1810.04152.
    [4] Geoffrey Roeder, Yuhuai Wu and David Duvenaud. Sticking the landing.
        NeurIPS 2017. arXiv:1703.09194.
    [5] Alexander Buchholz, Florian Wenzel and Stephan Mandt. Quasi-Monte
        Carlo variational inference. ICML 2018. arXiv:1807.01604.
    """
    config = check_arguments(  # 1. check every argument, once
        target_log_prob_fn,
        surrogate_posterior,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        use_reparameterization=use_reparameterization,
        gradient_estimator=gradient_estimator,
        stopped_surrogate_posterior=stopped_surrogate_posterior,
        seed=seed,
        name=name,
        sampling=sampling,
    )
    return evaluate_loss(config, seed)


def evaluate_loss(config: LossConfig, seed=None):
    """The loss of checked arguments (`loss_config.check_arguments`) for `seed`.

    Tools that evaluate one loss many times (fitting, Keras, diagnostics) check
    once and call this with a new seed each time.
    """
    return evaluate(config, seed).loss


def evaluate(config: LossConfig, seed=None) -> LossEvaluation:
    """The loss for `seed`, with the draw it came from (for training steps)."""
    with tf.name_scope(config.name):
        sample_seed, target_seed = tfp.random.split_seed(seed, 2)  # 2. split seed
        draw = config.route.draw(  # 3. draw by the route decided in the checks
            config.surrogate_posterior,
            config.stopped_surrogate_posterior,
            config.sample_size,
            config.importance_sample_size,
            sample_seed,
        )
        target_log_prob = targets.call_target(  # 4. call the target
            config.target_log_prob_fn, draw.samples, target_seed
        )
        target_log_prob = targets.check_target_output(
            target_log_prob, draw.log_prob_spec
        )
        log_densities = draw.with_target(target_log_prob)
        per_draw = config.estimator.per_draw_loss(  # 5. per-draw loss
            log_densities, config.discrepancy_fn
        )
        return LossEvaluation(
            loss=tf.reduce_mean(per_draw, axis=0),  # 6. mean over draws
            samples=draw.samples,
            log_densities=log_densities,
            discrepancy_fn=config.discrepancy_fn,
            estimator=config.estimator,
        )
