"""Drawing the discrete parts of a surrogate, for the discrete-latent estimators.

`sampler.draw` hands a plan with `discrete` draws (`estimators.plan.
DiscreteDraws`) to `draw` here, which knows three ways of drawing and no
estimator:

```none
group_size n != 1:          the sample_size draws come in groups of n; within a
                            group the uniforms behind each Bernoulli value and
                            each stick-breaking level of a categorical value are
                            mutually antithetic (Dirichlet copula,
                            _internal/discrete_couplings.py)
relaxations R > 0:          iid draws, plus R uniform tensors per discrete value
                            for relaxations drawn given the value
straight_through_samples M: a straight-through sample h carries the mean
                            gradient of M relaxations drawn given h:
                            h + mean_m s_m - stop(mean_m s_m)
```

Samples are laid out `[S * K] + batch + event`, as `Layout.DRAWS_FIRST`
(draw `s = g n + i` is the `i`-th of group `g`). Each discrete part
(`tfd.Bernoulli`, `tfd.Categorical`, `tfd.OneHotCategorical`, the relaxed
straight-through distributions; alone, in `tfd.Independent`, or a part of a
`JointDistribution`) comes back as an `estimators.plan.DiscretePart`; the
other parts of a joint surrogate keep their pathwise gradient.

Joint surrogates are drawn with `sample_distributions`, which returns each
part's distribution given its parents' values; values are pinned with
`value=`:

- grouped draws: one small pass finds the discrete parts' distributions
  (which must not depend on other parts: a group shares one distribution);
  a second draws the rest given the antithetic values;
- relaxations: one pass (the values are TFP's);
- straight-through: one pass, then one more per straight-through part with
  the Rao-Blackwellised samples pinned and the same seed, so the other parts
  keep their values and take their gradient through the new samples.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import discrete_couplings, relaxations
from tfp_vi_estimators._internal.surrogates import as_distribution
from tfp_vi_estimators.estimators.plan import DiscreteFamily, DiscretePart

tfd = tfp.distributions

__all__ = ["check_surrogate", "draw", "family_of"]

_FAMILIES = (
    (tfd.Bernoulli, DiscreteFamily.BERNOULLI),
    (tfd.Categorical, DiscreteFamily.CATEGORICAL),
    (tfd.OneHotCategorical, DiscreteFamily.ONE_HOT_CATEGORICAL),
)
_FAMILIES_ALL = tuple(DiscreteFamily)
_STRAIGHT_THROUGH = (
    DiscreteFamily.STRAIGHT_THROUGH_BERNOULLI,
    DiscreteFamily.STRAIGHT_THROUGH_ONE_HOT,
)
_DECLARABLE = frozenset(family.value for family in _STRAIGHT_THROUGH)
_INDEX_VALUED = (DiscreteFamily.CATEGORICAL,)
_BERNOULLI_VALUED = (
    DiscreteFamily.BERNOULLI,
    DiscreteFamily.STRAIGHT_THROUGH_BERNOULLI,
)


def _unwrapped(distribution):
    while isinstance(distribution, tfd.Independent):
        distribution = distribution.distribution
    return distribution


def family_of(distribution):
    """The `DiscreteFamily` of a distribution (through `tfd.Independent`), or None.

    TFP's discrete distributions are known by class; any other distribution
    names its family itself with a `discrete_family` attribute holding a
    `DiscreteFamily` value (the relaxed straight-through distributions do).
    """
    inner = _unwrapped(distribution)
    for cls, family in _FAMILIES:
        if isinstance(inner, cls):
            return family
    declared = getattr(inner, "discrete_family", None)
    if isinstance(declared, str) and declared in _DECLARABLE:
        return DiscreteFamily(declared)
    return None


def _is_joint(surrogate):
    return isinstance(surrogate, tfd.JointDistribution)


def _parts(surrogate):
    """The parts of a joint surrogate (for one sample), or `[surrogate]`."""
    if not _is_joint(surrogate):
        return [surrogate]
    # TFP builds these for `reparameterization_type` too.
    return tf.nest.flatten(surrogate._get_single_sample_distributions())  # noqa: SLF001


def check_surrogate(estimator, surrogate, sample_size):
    """What a discrete-latent estimator needs of the surrogate and `sample_size`.

    Raises:
      ValueError: naming the families the estimator serves, if a part is
        neither one of them nor reparameterized (in a joint surrogate), if
        there is no discrete part, or if `sample_size` is not a multiple of
        the estimator's group of antithetic draws.
    """
    spec = estimator.plan.discrete
    q = as_distribution(surrogate)
    served = " or ".join(sorted(f.value for f in spec.families))
    where = (
        "alone, in tfd.Independent, or as parts of a JointDistribution whose "
        "other parts are reparameterized"
    )
    parts = _parts(q)
    # Read off each part (TFP lists a JointDistributionNamed's parts in model
    # order, its `reparameterization_type` in the order of sorted names).
    reparameterized = [
        _is_joint(q) and part.reparameterization_type == tfd.FULLY_REPARAMETERIZED
        for part in parts
    ]
    families = [family_of(part) for part in parts]
    for i, (part, family, path) in enumerate(
        zip(parts, families, reparameterized, strict=True)
    ):
        if family in spec.families or (path and family not in _FAMILIES_ALL):
            continue
        name = f"part {i} of " if _is_joint(q) else ""
        raise ValueError(
            f"{estimator.name} serves {served} ({where}); {name}"
            f"`surrogate_posterior` is {type(_unwrapped(part)).__name__}."
        )
    if not any(f in spec.families for f in families):
        raise ValueError(
            f"{estimator.name} needs a {served} part in `surrogate_posterior` "
            f"({where}); got {type(q).__name__} without one."
        )
    _check_group(estimator, sample_size)


def _check_group(estimator, sample_size):
    group_size = estimator.plan.discrete.group_size
    if group_size in (None, 1):
        return
    static = tf.get_static_value(sample_size)
    if static is None or static % group_size:
        raise ValueError(
            f"{estimator.name} draws groups of {group_size} antithetic draws: "
            f"`sample_size` must be a Python integer multiple of {group_size} "
            f"(the number of target evaluations per particle); got {sample_size!r}."
        )


def draw(plan, surrogate, sample_size, importance_sample_size, seed):
    """Draws by `plan.discrete`; see the module docstring.

    Returns:
      samples: the surrogate's samples, `[S * K] + batch + event` (a
        structure for a joint surrogate), as the target sees them.
      log_q: `[S * K] + batch`, their log-density under the live parameters.
      parts: a tuple of `DiscretePart`s, `[S, K] + ...`, one per discrete part
        of a family the plan serves (none for straight-through draws).
    """
    q = as_distribution(surrogate)
    spec = plan.discrete
    seed = tfp.random.sanitize_seed(seed)
    group_size = sample_size if spec.group_size is None else spec.group_size
    shape = (sample_size, importance_sample_size)
    if group_size != 1:
        distributions, samples = _draw_coupled(q, shape, group_size, seed)
    elif spec.straight_through_samples:
        distributions, samples = _draw_straight_through(
            q, shape, spec.straight_through_samples, seed
        )
    else:
        distributions, samples = _draw_independent(q, shape, seed)
    log_q = tf.add_n(
        [
            d.log_prob(x)
            for d, x in zip(
                tf.nest.flatten(distributions), tf.nest.flatten(samples), strict=True
            )
        ]
    )
    parts = _discrete_parts(
        spec, distributions, samples, shape, tfp.random.split_seed(seed, 3)[2]
    )
    return samples, log_q, parts


def _draw_independent(q, shape, seed):
    sample_seed = tfp.random.split_seed(seed, 3)[0]
    num_draws = shape[0] * shape[1]
    if _is_joint(q):
        return q.sample_distributions([num_draws], seed=sample_seed)
    return q, q.sample([num_draws], seed=sample_seed)


def _draw_coupled(q, shape, group_size, seed):
    """Groups of mutually antithetic discrete values, the rest drawn given them."""
    coupling_seed, sample_seed, _ = tfp.random.split_seed(seed, 3)
    if not _is_joint(q):
        return q, _coupled_values(q, shape, group_size, coupling_seed)
    distributions, _ = q.sample_distributions([2], seed=sample_seed)
    flat = tf.nest.flatten(distributions)
    part_shapes = tf.nest.flatten(q.batch_shape)
    seeds = tfp.random.split_seed(coupling_seed, len(flat))
    pinned = []
    for i, (d, batch_shape) in enumerate(zip(flat, part_shapes, strict=True)):
        if family_of(d) is None:
            pinned.append(None)
            continue
        if d.batch_shape.rank is not None and d.batch_shape.rank > batch_shape.rank:
            raise ValueError(
                "Antithetic draws share one distribution per group, but part "
                f"{i} ({type(_unwrapped(d)).__name__}) of `surrogate_posterior` "
                "depends on other parts' values. Use RELAX or "
                "MixedReparameterization for such a surrogate."
            )
        pinned.append(_coupled_values(d, shape, group_size, seeds[i]))
    value = tf.nest.pack_sequence_as(distributions, pinned)
    num_draws = shape[0] * shape[1]
    return q.sample_distributions([num_draws], seed=sample_seed, value=value)


def _coupled_values(distribution, shape, group_size, seed):
    """`[S * K] + batch + event` values, antithetic within each group of draws."""
    family = family_of(distribution)
    inner = _unwrapped(distribution)
    logits = inner.logits_parameter()
    bernoulli = family in _BERNOULLI_VALUED
    unit_shape = tf.shape(logits) if bernoulli else tf.shape(logits)[:-1]
    levels = [] if bernoulli else [tf.shape(logits)[-1] - 1]
    sample_size, importance_sample_size = shape
    uniforms = discrete_couplings.dirichlet_copula_uniforms(
        sample_size // group_size,
        group_size,
        tf.concat([[importance_sample_size], unit_shape, levels], axis=0),
        logits.dtype,
        seed,
    )
    uniforms = tf.reshape(
        uniforms,
        tf.concat([[sample_size * importance_sample_size], unit_shape, levels], 0),
    )
    if bernoulli:
        values = discrete_couplings.antithetic_bernoulli(uniforms, logits)
    else:
        values = discrete_couplings.coupled_categorical(uniforms, logits)
        if family in _INDEX_VALUED:
            values = tf.argmax(values, axis=-1, output_type=tf.int32)
    return tf.cast(values, distribution.dtype)


def _draw_straight_through(q, shape, num_samples, seed):
    """Straight-through samples carrying the mean of conditional relaxations."""
    sample_seed, noise_seed, _ = tfp.random.split_seed(seed, 3)
    num_draws = shape[0] * shape[1]
    if not _is_joint(q):
        hard = tf.stop_gradient(q.sample([num_draws], seed=sample_seed))
        return q, _rao_blackwellised(q, hard, num_samples, noise_seed)
    distributions, samples = q.sample_distributions([num_draws], seed=sample_seed)
    flat = tf.nest.flatten(distributions)
    straight = [family_of(d) in _STRAIGHT_THROUGH for d in flat]
    seeds = tfp.random.split_seed(noise_seed, len(flat))
    # One pass per straight-through part: a chain of them gets, pass by pass,
    # the gradient through its parents' Rao-Blackwellised samples.
    for _ in range(sum(straight)):
        pinned = [
            _rao_blackwellised(d, tf.stop_gradient(x), num_samples, s) if st else None
            for d, x, s, st in zip(
                flat, tf.nest.flatten(samples), seeds, straight, strict=True
            )
        ]
        distributions, samples = q.sample_distributions(
            [num_draws],
            seed=sample_seed,
            value=tf.nest.pack_sequence_as(distributions, pinned),
        )
        flat = tf.nest.flatten(distributions)
    return distributions, samples


def _rao_blackwellised(distribution, hard, num_samples, seed):
    """`h` in value; the gradient of `mean_m s_m`, `s_m` relaxed given `h`.

    `s_m = sigmoid(z_m / t)` or `softmax(z_m / t)` with `d z_m / d a = 1`, so
    the gradient is that of the mean Jacobian `J` (stopped: the `M`
    relaxations cost forward work only) applied to `a - stop(a)`:
    `J = mean_m s_m (1 - s_m) / t` per Bernoulli unit, `J = mean_m (diag(s_m)
    - s_m s_m^T) / t` per categorical one.
    """
    inner = _unwrapped(distribution)
    categorical = family_of(distribution) not in _BERNOULLI_VALUED
    logits = tf.broadcast_to(
        inner.logits_parameter(), tf.shape(hard), name="logits_at_samples"
    )
    temperature = tf.convert_to_tensor(inner.temperature, logits.dtype)
    if categorical:
        temperature = temperature[..., tf.newaxis]
    uniforms = discrete_couplings.open_uniform(
        tf.concat([[num_samples], tf.shape(hard)], 0), logits.dtype, seed
    )
    stopped = tf.stop_gradient(logits)
    values = tf.cast(hard, logits.dtype)
    direction = logits - stopped  # zero in value, the identity in gradient
    if categorical:
        z = relaxations.conditional(stopped, values, uniforms, categorical)
        soft = relaxations.soft(z, temperature, categorical)
        jacobian = (
            tf.reduce_mean(
                tf.linalg.diag(soft)
                - soft[..., :, tf.newaxis] * soft[..., tf.newaxis, :],
                axis=0,
            )
            / temperature[..., tf.newaxis]
        )
        step = tf.linalg.matvec(tf.stop_gradient(jacobian), direction)
    else:
        soft = relaxations.conditional_sigmoid(stopped, values, uniforms, temperature)
        slope = tf.reduce_mean(soft * (1.0 - soft), axis=0) / temperature
        step = tf.stop_gradient(slope) * direction
    return tf.cast(hard, logits.dtype) + step


def _discrete_parts(spec, distributions, samples, shape, seed):
    """The `DiscretePart`s of the families the plan serves, `[S, K] + ...`."""
    parts = []
    flat = tf.nest.flatten(distributions)
    seeds = tfp.random.split_seed(seed, len(flat))
    for d, x, part_seed in zip(flat, tf.nest.flatten(samples), seeds, strict=True):
        family = family_of(d)
        if family not in spec.families or family in _STRAIGHT_THROUGH:
            continue
        parts.append(_canonical(d, family, x, shape, spec.relaxations, part_seed))
    return tuple(parts)


def _canonical(distribution, family, samples, shape, num_relaxations, seed):
    """Logits (live) and float values (stopped), `[S, K] + batch + units (+ [C])`."""
    logits = _unwrapped(distribution).logits_parameter()
    values = tf.stop_gradient(samples)
    if family in _INDEX_VALUED:
        values = tf.one_hot(values, tf.shape(logits)[-1], dtype=logits.dtype)
    values = tf.cast(values, logits.dtype)
    logits = tf.broadcast_to(logits, tf.shape(values))
    arranged = tf.concat([shape, tf.shape(values)[1:]], axis=0)
    logits, values = tf.reshape(logits, arranged), tf.reshape(values, arranged)
    noise = None
    if num_relaxations:
        noise = discrete_couplings.open_uniform(
            tf.concat([[num_relaxations], arranged], 0), logits.dtype, seed
        )
    return DiscretePart(
        categorical=family not in _BERNOULLI_VALUED,
        logits=logits,
        values=values,
        noise=noise,
    )
