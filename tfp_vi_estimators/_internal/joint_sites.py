"""The sites of a `JointDistribution`: names, dependency graph, per-site terms.

For the structure-aware score function (`estimators.StructuredScoreFunction`)
the sampler and the target evaluation read each site of a joint surrogate and
of a joint model the same way, here:

- `unpinned(joint)`: a model pinned to data (`experimental_pin`) as the
  joint it pins and its pins, `{site: value}` (`{}` for an unpinned joint);
- `site_names(joint)`: the parts' names in the model's order (a
  `JointDistributionNamed`'s keys, the names TFP resolves for the others);
- `site_distributions(joint, values)`: each site's distribution given the
  values of all sites, `{site: distribution}`;
- `parents(joint)`: each site's parents. `JointDistributionSequential` and
  `JointDistributionNamed` state their graph (`resolve_graph`); for a
  `JointDistributionCoroutine` it is derived by tracing the model once with
  symbolic values and reading, for each site's distribution, which values
  its parameter tensors are computed from (a dependence in the traced graph;
  a value used only through Python control flow cannot be seen, and a
  coroutine whose distributions do not expose their tensors is refused);
- `site_terms(distribution, value)`: a site's log-density with its leading
  event axis kept when the site is a `tfd.Independent` or `tfd.Sample` with
  at least one such axis (`sample + batch + [P]`), else its log-density
  (`sample + batch`). The leading axis is the one a plate of data points
  indexes.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    "is_model",
    "parents",
    "site_distributions",
    "site_names",
    "site_terms",
    "unpinned",
]


def is_model(value) -> bool:
    """A `JointDistribution`, or one pinned to data (`experimental_pin`)."""
    pinned = tfp.experimental.distributions.JointDistributionPinned
    return isinstance(value, (tfd.JointDistribution, pinned))


def unpinned(joint):
    """`(joint, pins)`: the joint a pinned model pins and its `{site: value}`."""
    pinned = tfp.experimental.distributions.JointDistributionPinned
    if isinstance(joint, pinned):
        return joint.distribution, dict(joint.pins)
    return joint, {}


def site_distributions(joint, values):
    """`{site: distribution}` of `joint` given `values`, `{site: value}` (all)."""
    names = site_names(joint)
    structured = joint._model_unflatten([values[n] for n in names])  # noqa: SLF001
    # Every value is given, so nothing is drawn; the seed only spares a
    # stateful default.
    distributions, _ = joint.sample_distributions(value=structured, seed=(0, 0))
    return dict(zip(names, _flat(joint, distributions), strict=True))


def site_names(joint):
    """The sites' names, in the model's order."""
    return list(joint._flat_resolve_names())  # noqa: SLF001 - TFP's naming


def parents(joint):
    """`{site: tuple of parent sites}` (see the module docstring).

    Raises:
      ValueError: for a coroutine whose graph cannot be read.
    """
    if hasattr(joint, "resolve_graph"):
        return {name: tuple(p) for name, p in joint.resolve_graph()}
    return _derived_parents(joint)


def _derived_parents(joint):
    names = site_names(joint)
    events = _flat(joint, joint.event_shape)
    batches = joint.batch_shape
    # An auto-batched model has one batch shape for all its parts.
    if isinstance(batches, tf.TensorShape):
        batches = [batches] * len(events)
    else:
        batches = _flat(joint, batches)
    specs = [
        tf.TensorSpec(tf.TensorShape(batch).concatenate(event), dtype)
        for batch, event, dtype in zip(
            batches, events, _flat(joint, joint.dtype), strict=True
        )
    ]

    def traced(*values):
        structured = joint._model_unflatten(values)  # noqa: SLF001
        distributions, _ = joint.sample_distributions(value=structured, seed=(0, 0))
        return [
            _parameter_tensors(d, name)
            for d, name in zip(_flat(joint, distributions), names, strict=True)
        ]

    function = tf.function(traced, autograph=False)
    graph = function.get_concrete_function(*specs).graph
    placeholders = [t.op for t in graph.inputs[: len(specs)]]
    return {
        name: tuple(
            other
            for other, placeholder in zip(names, placeholders, strict=True)
            if other != name and placeholder in _ancestors(tensors)
        )
        for name, tensors in zip(names, graph.structured_outputs, strict=True)
    }


def _flat(joint, structure):
    return list(joint._model_flatten(structure))  # noqa: SLF001


def _parameter_tensors(distribution, name):
    """The tensors a site's distribution is computed from (its parameters)."""
    tensors = []
    for value in distribution.parameters.values():
        if isinstance(value, tfd.Distribution):
            tensors += _parameter_tensors(value, name)
            continue
        for leaf in tf.nest.flatten(value, expand_composites=True):
            if isinstance(leaf, tf.Tensor):
                tensors.append(leaf)
    if not tensors and distribution.parameters:
        # Nothing symbolic: a site with constant parameters has no parents.
        return []
    return tensors


def _ancestors(tensors):
    """The ops the `tensors` are computed from (data dependence)."""
    seen, stack = set(), [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
    return seen


def site_terms(distribution, value):
    """`log p(value)` per site, the leading event axis kept where there is one.

    Returns:
      `(terms, plated)`: `sample + batch + [P]` and `True` for a
      `tfd.Independent` or `tfd.Sample` with at least one event axis of its
      own; else `sample + batch` and `False`.
    """
    if isinstance(distribution, tfd.Independent):
        axes = _static_int(distribution.reinterpreted_batch_ndims)
        if axes:
            terms = distribution.distribution.log_prob(value)
            return _sum_trailing(terms, axes - 1), True
    if isinstance(distribution, tfd.Sample):
        axes = tf.get_static_value(tf.size(distribution.sample_shape))
        if axes:
            return _sample_terms(distribution, value, int(axes)), True
    return distribution.log_prob(value), False


def _static_int(value):
    value = tf.get_static_value(value)
    return None if value is None else int(value)


def _sum_trailing(terms, count):
    """Sums the last `count` axes of `terms`."""
    if not count:
        return terms
    return tf.reduce_sum(terms, axis=list(range(-count, 0)))


def _sample_terms(distribution, value, axes):
    """A `tfd.Sample`'s per-element log-densities, its first sample axis kept."""
    inner = distribution.distribution
    event_rank = _event_rank(inner.event_shape)
    rank = value.shape.rank
    first = rank - event_rank - axes
    # Move the sample axes in front, so the inner distribution broadcasts its
    # batch shape against the value's, as tfd.Sample does.
    moved = tf.experimental.numpy.moveaxis(
        value, list(range(first, first + axes)), list(range(axes))
    )
    terms = inner.log_prob(moved)  # sample_axes + sample + batch
    terms = tf.experimental.numpy.moveaxis(
        terms, list(range(axes)), list(range(-axes, 0))
    )
    return _sum_trailing(terms, axes - 1)


def _event_rank(shape):
    """The static rank of an event shape."""
    rank = tf.TensorShape(shape).rank
    if rank is None:
        raise ValueError("site_terms needs a statically known event rank.")
    return rank
