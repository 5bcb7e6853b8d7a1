"""`monte_carlo_variational_loss`: a drop-in for `tfp.vi`'s, with correct gradients."""

import functools
import inspect

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimator_choice import resolve_gradient_estimator
from tfp_vi_estimators.estimators.base import PARTIAL, LogDensities
from tfp_vi_estimators.stopped_surrogate import stopped_log_prob_fn

__all__ = ["monte_carlo_variational_loss"]


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
    """
    estimator = check_arguments(
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
    )

    with tf.name_scope(name or "monte_carlo_variational_loss"):
        sample_seed, target_seed = tfp.random.split_seed(seed, 2)
        draw = (
            _draw_from_each_component
            if getattr(estimator, "stratified_mixture", False)
            else _draw
        )
        samples, log_densities, arrange, state, log_prob_like = draw(
            estimator,
            surrogate_posterior,
            stopped_surrogate_posterior,
            sample_size,
            importance_sample_size,
            sample_seed,
        )
        target_log_prob = call_target(target_log_prob_fn, samples, target_seed)
        _check_target_output(target_log_prob, log_prob_like)
        log_densities.target = arrange(target_log_prob)
        per_draw = estimator.per_draw_loss(log_densities, discrepancy_fn, state)
        return tf.reduce_mean(per_draw, axis=0)


def check_arguments(
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
):
    """Every argument check of `monte_carlo_variational_loss`, no tensor work.

    Tools that call the loss many times (`diagnostics.compare_estimators`,
    fitting loops) run it first, so a bad argument fails before any work.

    Returns:
      The estimator object `gradient_estimator` resolves to.

    Raises:
      TypeError, ValueError: naming the argument, as the loss does.
    """
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    checks.check_positive_integer("sample_size", sample_size)
    checks.check_positive_integer("importance_sample_size", importance_sample_size)
    checks.check_callable("discrepancy_fn", discrepancy_fn)
    checks.check_stopped_surrogate(surrogate_posterior, stopped_surrogate_posterior)
    checks.check_seed(seed)
    checks.check_name(name)
    estimator = resolve_gradient_estimator(
        gradient_estimator, use_reparameterization, surrogate_posterior
    )
    checks.check_positive_integer(
        "importance_sample_size",
        importance_sample_size,
        minimum=estimator.min_importance_sample_size,
    )
    checks.check_positive_integer(
        "sample_size", sample_size, minimum=estimator.min_sample_size
    )
    estimator.check_arguments(sample_size, importance_sample_size, discrepancy_fn)
    return estimator


def _draw(
    estimator, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
):
    """Samples as tfp.vi draws them, and their lazily computed log-densities."""
    if estimator.particles_first:
        sample_shape = [importance_sample_size, sample_size]

        def arrange(log_prob):  # [K, S] + batch -> [S, K] + batch
            perm = tf.concat([[1, 0], tf.range(2, tf.rank(log_prob))], axis=0)
            return tf.transpose(log_prob, perm)

    else:
        sample_shape = [sample_size * importance_sample_size]

        def arrange(log_prob):  # [S * K] + batch -> [S, K] + batch
            shape = tf.concat(
                [[-1, importance_sample_size], tf.shape(log_prob)[1:]], axis=0
            )
            return tf.reshape(log_prob, shape)

    non_reparameterized = None
    if estimator.reparameterization == PARTIAL:
        # One pass over the parts gives both the density and its discrete share.
        drawn = surrogate.sample(sample_shape, seed=seed)
        log_q, non_reparameterized = _split_log_prob(surrogate, drawn)
    elif estimator.reparameterized_samples:
        # As tfp.vi: the density comes with the sample (no bijector inverses).
        drawn, log_q = surrogate.experimental_sample_and_log_prob(
            sample_shape, seed=seed
        )
    else:
        drawn = tf.nest.map_structure(
            tf.stop_gradient, surrogate.sample(sample_shape, seed=seed)
        )
        log_q = surrogate.log_prob(drawn)
    samples, state = estimator.prepare_samples(drawn)
    log_densities = LogDensities(
        target=None,
        surrogate=lambda: arrange(log_q),
        stopped_parameters=lambda: arrange(
            stopped_log_prob_fn(surrogate, stopped_surrogate)(samples)
        ),
        stopped_sample=lambda: arrange(
            surrogate.log_prob(tf.nest.map_structure(tf.stop_gradient, drawn))
        ),
        non_reparameterized=lambda: arrange(non_reparameterized),
    )
    return samples, log_densities, arrange, state, log_q


def _draw_from_each_component(
    estimator, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
):
    """One reparameterized draw per mixture component: `[S, C] + batch + event`."""
    del importance_sample_size  # checked to be 1
    batch_rank = surrogate.batch_shape.rank
    drawn = surrogate.components_distribution.sample([sample_size], seed=seed)
    # [S] + batch + [C] + event -> [S, C] + batch + event
    samples = tf.experimental.numpy.moveaxis(drawn, 1 + batch_rank, 1)
    samples, state = estimator.prepare_samples(samples)
    log_pi = tf.math.log_softmax(
        surrogate.mixture_distribution.logits_parameter(), axis=-1
    )  # batch + [C]
    log_densities = LogDensities(
        target=None,
        stopped_parameters=lambda: stopped_log_prob_fn(surrogate, stopped_surrogate)(
            samples
        ),
        component_log_weights=lambda: tf.expand_dims(
            tf.experimental.numpy.moveaxis(log_pi, -1, 0), 0
        ),
    )
    log_prob_like = tf.TensorSpec(samples.shape[: 2 + batch_rank], samples.dtype)
    return samples, log_densities, (lambda log_prob: log_prob), state, log_prob_like


def _split_log_prob(surrogate, samples):
    """A JointDistribution's log-density, and the share of its parts that are
    not reparameterized (live parameters and parents)."""
    kinds = tf.nest.flatten(surrogate.reparameterization_type)
    parts = tf.nest.flatten(surrogate.log_prob_parts(samples))
    discrete = [
        part
        for part, kind in zip(parts, kinds, strict=True)
        if kind != tfp.distributions.FULLY_REPARAMETERIZED
    ]
    return tf.add_n(parts), tf.add_n(discrete) if discrete else tf.zeros_like(parts[0])


def _check_target_output(target_log_prob, log_prob_like):
    """One log-density per sample, in the surrogate's dtype; checked statically."""
    if not tf.is_tensor(target_log_prob):
        target_log_prob = tf.convert_to_tensor(target_log_prob)
    if target_log_prob.dtype != log_prob_like.dtype:
        raise ValueError(
            "`target_log_prob_fn` must return the surrogate's log-density dtype "
            f"{log_prob_like.dtype.name}; got {target_log_prob.dtype.name}."
        )
    if not target_log_prob.shape.is_compatible_with(log_prob_like.shape):
        raise ValueError(
            "`target_log_prob_fn` must return one log-density per sample, shaped "
            f"like the surrogate's log_prob {log_prob_like.shape}; got "
            f"{target_log_prob.shape}."
        )


def call_target(target_log_prob_fn, samples, seed):
    """Calls the target as `tfp.vi` does, passing `seed` if it takes one.

    A signature with a `seed` parameter gets it; one with neither `seed` nor
    `**kwargs` (or a distribution's own `log_prob`) does not. Otherwise the
    target is tried with the seed, then without, as `tfp.vi` does; if both
    fail, the error of the call without the seed is raised, with a note.
    """
    call = functools.partial(_call_with_structure, target_log_prob_fn, samples)
    accepts = _accepts_seed(target_log_prob_fn)
    if accepts is True:
        return call(seed=seed)
    if accepts is False:
        return call()
    try:
        return call(seed=seed)
    except Exception as with_seed:  # noqa: BLE001 - mirrors tfp.vi's detection
        first = f"{type(with_seed).__name__}: {with_seed}"
    try:
        return call()
    except Exception as without_seed:
        without_seed.add_note(
            f"tfp_vi_estimators called `target_log_prob_fn` with `seed=` first; "
            f"that raised {first}"
        )
        raise


def _call_with_structure(fn, samples, **kwargs):
    if isinstance(samples, (list, tuple)) and not hasattr(samples, "_fields"):
        return fn(*samples, **kwargs)
    if isinstance(samples, dict):
        return fn(**samples, **kwargs)
    return fn(samples, **kwargs)


def _accepts_seed(fn):
    owners = (getattr(f, "__self__", None) for f in (fn, inspect.unwrap(fn)))
    if any(isinstance(o, tfp.distributions.Distribution) for o in owners):
        return False  # `log_prob(value, name, **kwargs)` passes kwargs on
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    seed = parameters.get("seed")
    if seed is not None and seed.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    ):
        return True
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return False
