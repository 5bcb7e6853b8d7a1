"""`csiszar_vimco`: `tfp.vi.csiszar_vimco`, as the loss with the VIMCO estimator."""

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.variational_loss import monte_carlo_variational_loss

__all__ = ["csiszar_vimco"]


def csiszar_vimco(f, p_log_prob, q, num_draws, num_batch_draws=1, seed=None, name=None):
    """VIMCO [1] generalized to Csiszar f-divergences, as `tfp.vi.csiszar_vimco`.

    ```none
    vimco = f(log(Avg{u[i] : i = 0..num_draws-1})),
    logu[i] = log p(h[i]) - log q(h[i]),   h[i] ~ q iid
    ```

    The value is that of the loss; the gradient is VIMCO's: the score function
    with a per-particle leave-one-out (geometric mean) baseline. The same
    samples, values and gradients as `tfp.vi.csiszar_vimco` for the same seed;
    it is `monte_carlo_variational_loss(p_log_prob, q,
    sample_size=num_batch_draws, importance_sample_size=num_draws,
    discrepancy_fn=f, gradient_estimator=GradientEstimators.VIMCO, seed=seed)`
    (`tfp.vi` deprecates it in favour of that call; it warns, this does not).

    Args:
      f: Python callable, a Csiszar function in log space.
      p_log_prob: Python callable, the (unnormalized) target log-density,
        called as the loss calls `target_log_prob_fn`.
      q: the surrogate, a `tfd.Distribution` (or an object that behaves as one).
      num_draws: integer >= 2, particles per draw (the importance sample size).
      num_batch_draws: positive integer, independent draws. Default value: `1`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.
      name: name scope. Default value: `None` (`'csiszar_vimco'`).

    Returns:
      vimco: `Tensor` of shape `batch_shape`.

    Raises:
      ValueError: if `num_draws < 2`; the loss's errors for other arguments.

    #### References

    [1] Andriy Mnih and Danilo Rezende. Variational inference for Monte Carlo
        objectives. ICML 2016. arXiv:1602.06725.
    """
    checks.check_positive_integer("num_draws", num_draws, minimum=2)
    checks.check_positive_integer("num_batch_draws", num_batch_draws)
    return monte_carlo_variational_loss(
        p_log_prob,
        q,
        sample_size=num_batch_draws,
        importance_sample_size=num_draws,
        discrepancy_fn=f,
        gradient_estimator=GradientEstimators.VIMCO,
        seed=seed,
        name=name or "csiszar_vimco",
    )
