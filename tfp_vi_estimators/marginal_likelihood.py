"""Importance-sampled log marginal likelihood, in chunks of bounded memory.

```none
z_1..z_N ~ q,   lw_n = log p(x, z_n) - log q(z_n)
log p(x) ~= log 1/N sum_n exp(lw_n)
```

This is the importance-weighted bound of Burda et al. (2016) with `K = N`
particles, the number usually reported as a test log-likelihood (with
`N = 5000`). Its exponential is an unbiased estimate of `p(x)`; the log is a
lower bound in expectation that tightens as `N` grows.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.targets import call_target

__all__ = ["log_marginal_likelihood"]


def log_marginal_likelihood(
    target_log_prob_fn,
    surrogate_posterior,
    num_samples,
    chunk_size=1000,
    seed=None,
    name=None,
):
    """Importance-sampling estimate of `log p(x)` with a surrogate proposal.

    Draws `num_samples` samples from `surrogate_posterior` in chunks of
    `chunk_size` and accumulates a running log-sum-exp of the log importance
    weights, so memory is bounded by one chunk whatever `num_samples` is:

    ```none
    z[c, j] ~ q                          chunk c = 1..C, j = 1..chunk_size
    acc     = logaddexp(acc, logsumexp_j (log p(z[c, j]) - log q(z[c, j])))
    result  = acc - log(num_samples)
    ```

    The full chunks run inside a `tf.while_loop` (a single traced body, so the
    graph does not grow with `num_samples`); a last, smaller chunk takes the
    remainder when `chunk_size` does not divide `num_samples`. Works eagerly,
    in `tf.function` and under `jit_compile=True`.

    Args:
      target_log_prob_fn: Python callable returning the unnormalized log joint
        `log p(x, z)`, called as in `monte_carlo_variational_loss` (`fn(*z)`
        for a list or tuple, `fn(**z)` for a dict, `fn(z)` for a Tensor; given
        a `seed` keyword if it accepts one). For a chunk it receives samples
        shaped `[chunk_size] + batch_shape + event_shape` and must return
        `[chunk_size] + batch_shape`.
      surrogate_posterior: `tfp.distributions.Distribution`, the proposal `q`.
        A batch of surrogates (an amortized posterior over a batch of data
        points, say) gives one estimate per batch member.
      num_samples: positive Python integer N, the number of importance
        samples.
      chunk_size: positive Python integer, samples drawn at once; larger is
        faster, smaller uses less memory. Values above `num_samples` are
        clipped to it. Default value: `1000`.
      seed: PRNG seed; see `tfp.random.sanitize_seed`.
      name: name scope for the ops. Default value: `None`
        (`'log_marginal_likelihood'`).

    Returns:
      log_marginal: `Tensor` shaped like the target's log-density without
        the sample dimension (usually `batch_shape`), the estimate of
        `log p(x)`.

    Raises:
      TypeError: if `target_log_prob_fn` is not callable, the surrogate is
        not a distribution, the sizes are not integers or the seed is
        malformed.
      ValueError: if `num_samples` or `chunk_size` is below 1.

    #### Examples

    ```python
    # Test NLL of a VAE (per image), with 5000 samples in chunks of 500:
    nll = -tve.log_marginal_likelihood(
        lambda z: prior.log_prob(z) + decoder(z).log_prob(x),
        encoder(x),  # batch of surrogates, one per image
        num_samples=5000, chunk_size=500, seed=42)
    ```

    #### References

    [1] Yuri Burda, Roger Grosse and Ruslan Salakhutdinov. Importance weighted
        autoencoders. ICLR 2016. arXiv:1509.00519.
    """
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    num_samples = _check_python_integer("num_samples", num_samples)
    chunk_size = min(_check_python_integer("chunk_size", chunk_size), num_samples)
    checks.check_seed(seed)
    checks.check_name(name)
    num_full, remainder = divmod(num_samples, chunk_size)

    with tf.name_scope(name or "log_marginal_likelihood"):
        seeds = tf.stack(
            tfp.random.split_seed(
                tfp.random.sanitize_seed(seed), n=num_full + (remainder > 0)
            )
        )

        def chunk_logsumexp(size, index):
            sample_seed, target_seed = tfp.random.split_seed(seeds[index], 2)
            z, log_q = surrogate_posterior.experimental_sample_and_log_prob(
                [size], seed=sample_seed
            )
            log_p = tf.convert_to_tensor(
                call_target(target_log_prob_fn, z, target_seed), dtype=log_q.dtype
            )
            return tf.reduce_logsumexp(log_p - log_q, axis=0)

        # The first chunk fixes the accumulator's shape and dtype; the others
        # run in one loop body.
        first_size = chunk_size if num_full else remainder
        total = chunk_logsumexp(first_size, 0)
        if num_full > 1:

            def body(index, total):
                return index + 1, _logaddexp(total, chunk_logsumexp(chunk_size, index))

            _, total = tf.while_loop(
                lambda index, _: index < num_full,
                body,
                (tf.constant(1), total),
                maximum_iterations=num_full - 1,
            )
        if num_full and remainder:
            total = _logaddexp(total, chunk_logsumexp(remainder, num_full))
        return total - tf.constant(np.log(num_samples), total.dtype)


def _logaddexp(a, b):
    """log(exp(a) + exp(b)), exact when both are -inf."""
    larger = tf.maximum(a, b)
    safe = tf.where(tf.math.is_finite(larger), larger, tf.zeros_like(larger))
    return safe + tf.math.log(tf.exp(a - safe) + tf.exp(b - safe))


def _check_python_integer(name, value):
    """A static integer >= 1 (shapes of the chunks are static)."""
    if tf.is_tensor(value) and tf.get_static_value(value) is None:
        raise TypeError(f"`{name}` must be a static integer; got a dynamic Tensor.")
    checks.check_positive_integer(name, value)
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        value = tf.get_static_value(value)
    return int(value)
