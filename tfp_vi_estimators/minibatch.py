"""Minibatched data with the right scale: stochastic variational inference.

For a model with global latents `z` and `N` conditionally independent
examples, the log-joint is a prior term plus a sum over examples. A minibatch
`B` of `b` examples drawn uniformly (a shuffled epoch) gives an unbiased
estimate of it,

```none
log p(z, x)   = log p(z) + sum_{i=1}^{N} log p(x_i | z)
estimate      = log p(z) + (N / b) sum_{i in B} log p(x_i | z)
E_B[estimate] = log p(z, x),
```

so the variational loss and its gradient on a minibatch are unbiased for the
full-data ones [1]. The user gives the prior and the *per-example*
log-likelihood; this module applies `N / b`, so the scale cannot be forgotten
or applied twice. A missing or inconsistent `num_examples` is a `ValueError`
before any step.

Public API:

- `minibatch_target(prior_log_prob_fn, log_likelihood_fn, dataset,
  num_examples)` checks the arguments and returns a `MinibatchTarget`.
- `MinibatchTarget.target_log_prob_fn(batch)`: the scaled log-joint of one
  batch, a callable taking the surrogate's samples as `tfp.vi` passes them.
- `MinibatchTarget.scale(dtype)`: `num_examples / batch_size`.
- `MinibatchTarget.repeated_dataset()`: the dataset, repeated forever.
- `subsampled_target(prior_log_prob_fn, log_likelihood_fn, data, batch_size)`
  for data in memory returns a `SubsampledTarget`: an ordinary target that
  draws `batch_size` examples (uniformly, with replacement) from the seed of
  each call and applies `N / b` itself; no `tf.data`, so the whole fit
  compiles with XLA. `SubsampledTarget.full_log_prob` is the exact log-joint.

Pass a `MinibatchTarget` as `target_log_prob_fn` to
`tfp_vi_estimators.fit_surrogate_posterior`: each step then reads the next
batch of the (repeated) dataset; checkpoints save the iterator's position. The
other route of `tfp.vi` stays open: a target that takes `seed=` may subsample
its data itself, statelessly; `subsampled_target` builds one, with the scale.

#### References

[1] Matthew D. Hoffman, David M. Blei, Chong Wang and John Paisley.
    Stochastic variational inference. JMLR 14, 2013. arXiv:1206.7051.
"""

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "MinibatchTarget",
    "SubsampledTarget",
    "minibatch_target",
    "subsampled_target",
]


class _ScaledLikelihood:
    """`num_examples / batch_size`, shared by the two kinds of minibatch target."""

    num_examples: int
    batch_size: int

    def scale(self, dtype=tf.float32):
        """`num_examples / batch_size` as a `dtype` scalar."""
        return tf.constant(self.num_examples / self.batch_size, dtype)


@dataclasses.dataclass(frozen=True)
class MinibatchTarget(_ScaledLikelihood):
    """A target whose likelihood is read a minibatch at a time.

    Build it with `minibatch_target`, which checks the arguments.

    Attributes:
      prior_log_prob_fn: callable, `log p(z)` of the surrogate's samples.
      log_likelihood_fn: callable `log_likelihood_fn(batch, *samples)` returning
        the per-example log-likelihoods, shaped `sample_shape + [batch_size]`.
      dataset: `tf.data.Dataset` of batches with a static batch size.
      num_examples: Python int, `N`, the number of examples in the data.
      batch_size: Python int, `b`, read from the dataset's element spec.
    """

    prior_log_prob_fn: Callable
    log_likelihood_fn: Callable
    dataset: tf.data.Dataset
    num_examples: int
    batch_size: int

    def target_log_prob_fn(self, batch):
        """`log p(z) + N / b sum_{i in batch} log p(x_i | z)` of one batch."""

        def log_prob(*samples, seed=None, **named_samples):
            del seed  # The data is already drawn; nothing else is random.
            with tf.name_scope("minibatch_target_log_prob"):
                return _scaled_log_joint(self, batch, samples, named_samples)

        return log_prob

    def repeated_dataset(self):
        """The dataset repeated forever: one epoch after another."""
        return self.dataset.repeat()


@dataclasses.dataclass(frozen=True, eq=False)  # holds tensors: equal if the same
class SubsampledTarget(_ScaledLikelihood):
    """A target over in-memory data that draws its own minibatch at each call.

    Build it with `subsampled_target`, which checks the arguments. Called as a
    target (`target(*samples, seed=seed)`, as the loss calls a target that
    takes a seed), it draws `batch_size` example indices uniformly, with
    replacement, from the seed, gathers them and returns
    `log p(z) + N / b sum_{j=1}^{b} log p(x_{I_j} | z)`: unbiased, since each
    `I_j` is uniform on the `N` examples. No `tf.data` iterator: the whole fit
    loop compiles with XLA, and the batches are a function of the seed, so a
    checkpointed fit resumes exactly.

    Attributes:
      prior_log_prob_fn: callable, `log p(z)` of the surrogate's samples.
      log_likelihood_fn: callable `log_likelihood_fn(batch, *samples)` returning
        the per-example log-likelihoods, shaped `sample_shape + [batch_size]`.
      data: a `Tensor`, or a structure of them, with the `N` examples along
        the leading dimension.
      num_examples: Python int, `N`, read from `data`.
      batch_size: Python int, `b`, the examples drawn per call.
    """

    prior_log_prob_fn: Callable
    log_likelihood_fn: Callable
    data: Any = dataclasses.field(repr=False)
    num_examples: int
    batch_size: int

    def __call__(self, *samples, seed=None, **named_samples):
        """The scaled log-joint of a batch drawn from `seed` (stateful if `None`)."""
        with tf.name_scope("subsampled_target_log_prob"):
            indices = self.batch_indices(seed)
            batch = tf.nest.map_structure(lambda t: tf.gather(t, indices), self.data)
            return _scaled_log_joint(self, batch, samples, named_samples)

    def batch_indices(self, seed=None):
        """The `batch_size` example indices drawn from `seed`, with replacement."""
        dtype = tf.int32 if self.num_examples < 2**31 else tf.int64
        shape = [self.batch_size]
        if seed is None:
            return tf.random.uniform(shape, maxval=self.num_examples, dtype=dtype)
        return tf.random.stateless_uniform(
            shape,
            seed=tfp.random.sanitize_seed(seed),
            maxval=self.num_examples,
            dtype=dtype,
        )

    def full_log_prob(self, *samples, **named_samples):
        """`log p(z) + sum_{i=1}^{N} log p(x_i | z)`: every example, unscaled.

        The exact log-joint, for diagnostics (`psis_diagnostic`) or a
        full-data comparison; it costs a pass over the data.
        """
        prior = self.prior_log_prob_fn(*samples, **named_samples)
        per_example = self.log_likelihood_fn(self.data, *samples, **named_samples)
        return prior + tf.reduce_sum(per_example, axis=-1)


def subsampled_target(
    prior_log_prob_fn: Callable,
    log_likelihood_fn: Callable,
    data: Any,
    batch_size: int,
) -> SubsampledTarget:
    """Checks a target that subsamples in-memory data itself at each call.

    ```none
    I_1, ..., I_b  ~  Uniform{0, ..., N - 1}, drawn from the call's seed
    target(z)      =  log p(z) + (N / b) sum_{j=1}^{b} log p(x_{I_j} | z)
    ```

    The alternative to a `tf.data` pipeline (`minibatch_target`) for data that
    fits in memory: the batch is a `tf.gather` inside the compiled step, so
    the step costs what a data-free step of `b` examples costs (the per-element
    work of a shuffled `tf.data` pipeline often costs more than the step). It
    is an ordinary target: it works with `monte_carlo_variational_loss`, both
    fit functions, the Keras models and under `tf.distribute` (each replica
    draws its own `b` examples from its own seed, so a step reads `R b`).

    Args:
      prior_log_prob_fn: callable returning `log p(z)` for the surrogate's
        samples (called as `tfp.vi` calls a target).
      log_likelihood_fn: callable `log_likelihood_fn(batch, *samples)` returning
        one log-likelihood per example, shaped `sample_shape + [batch_size]`.
      data: a `Tensor` or array, or a structure of them (`(features,
        labels)`), with the examples along a static leading dimension `N`.
      batch_size: positive Python int, `b <= N`, examples drawn per call.

    Returns:
      A `SubsampledTarget`.

    Raises:
      TypeError: for a non-callable function, a non-integer `batch_size`, or
        `data` that is not tensors (or arrays convertible to them).
      ValueError: for a `data` with no tensors or no examples, components
        with different numbers of examples, a `batch_size` outside `1..N`,
        or floating-point `data` holding NaN or infinite values (checked
        when the values are known at the call: arrays and eager tensors, not
        symbolic tensors inside a `tf.function`).
    """
    for name, fn in (
        ("prior_log_prob_fn", prior_log_prob_fn),
        ("log_likelihood_fn", log_likelihood_fn),
    ):
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable; got {fn!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"`batch_size` must be a positive Python int; got {batch_size!r}."
        )
    num_examples = _num_examples_of(data)
    if num_examples == 0:
        raise ValueError("`data` holds no examples (its leading dimension is 0).")
    if not 1 <= batch_size <= num_examples:
        raise ValueError(
            f"`batch_size={batch_size}` must be between 1 and the {num_examples} "
            "examples in `data`."
        )
    return SubsampledTarget(
        prior_log_prob_fn=prior_log_prob_fn,
        log_likelihood_fn=log_likelihood_fn,
        data=tf.nest.map_structure(_checked_component, data),
        num_examples=num_examples,
        batch_size=int(batch_size),
    )


def _num_examples_of(data):
    """`N`, the common static leading dimension of `data`'s components."""
    components = tf.nest.flatten(data)
    if not components:
        raise ValueError("`data` holds no tensors.")
    sizes = set()
    for component in components:
        shape = getattr(component, "shape", None)
        if shape is None:
            raise TypeError(
                "`data` must be a tensor or array, or a structure of them; got "
                f"a component {component!r}."
            )
        shape = tf.TensorShape(shape)
        if not shape.rank or shape[0] is None:
            raise ValueError(
                "Every component of `data` must have the examples along a static "
                f"leading dimension; got shape {shape}."
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(
            "Every component of `data` must hold the same number of examples; "
            f"got {sorted(sizes)}."
        )
    return sizes.pop()


def _checked_component(component):
    """A component of `data` as a tensor; floating values finite if known."""
    try:
        tensor = tf.convert_to_tensor(component)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "`data` must be tensors or arrays of numbers (or strings); got a "
            f"component of type {type(component).__name__} with dtype "
            f"{getattr(component, 'dtype', None)}."
        ) from error
    if tensor.dtype.is_floating or tensor.dtype.is_complex:
        values = tf.get_static_value(tensor)
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError(
                "`data` must be finite: a component shaped "
                f"{tensor.shape} holds {np.sum(~np.isfinite(values))} NaN or "
                "infinite values (every batch that drew one would make the "
                "loss non-finite)."
            )
    return tensor


def minibatch_target(
    prior_log_prob_fn: Callable,
    log_likelihood_fn: Callable,
    dataset: tf.data.Dataset,
    num_examples: int | None = None,
) -> MinibatchTarget:
    """Checks a minibatched target: prior, per-example likelihood, data, `N`.

    ```none
    target(z; batch) = log p(z) + (N / b) sum_{i in batch} log p(x_i | z)
    ```

    Args:
      prior_log_prob_fn: callable returning `log p(z)` for the surrogate's
        samples (called as `tfp.vi` calls a target).
      log_likelihood_fn: callable `log_likelihood_fn(batch, *samples)` returning
        one log-likelihood per example, shaped `sample_shape + [batch_size]`
        (for logistic regression with weights `[S, D]` and features `[b, D]`:
        `Bernoulli(logits=weights @ x.T).log_prob(y)`, shaped `[S, b]`).
      dataset: `tf.data.Dataset` of batches (a tensor or a structure of them,
        each with the batch as the leading dimension), with a static batch
        size: `batch(b, drop_remainder=True)`, or a repeated dataset. One
        epoch of a shuffled dataset is the usual choice; it is repeated.
      num_examples: positive Python int, `N`, the number of examples the
        likelihood sums over. Required: it sets the scale.

    Returns:
      A `MinibatchTarget`.

    Raises:
      TypeError: for a non-callable function, a `dataset` that is not a
        `tf.data.Dataset`, or a non-integer `num_examples`.
      ValueError: for a missing `num_examples`, a batch size that is not
        static (a final partial batch would get the wrong scale) or is 0,
        components with different batch sizes, `num_examples` below the batch
        size, or a finite dataset whose number of batches is not
        `num_examples // batch_size` (one epoch). The batches' values are
        read only as the fit runs: a batch holding NaN makes that step's loss
        non-finite, and `fit_surrogate_posterior` stops with
        `NonFiniteLossError` naming the step, its update not applied.
    """
    for name, fn in (
        ("prior_log_prob_fn", prior_log_prob_fn),
        ("log_likelihood_fn", log_likelihood_fn),
    ):
        if not callable(fn):
            raise TypeError(f"`{name}` must be callable; got {fn!r}.")
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`dataset` must be a tf.data.Dataset of batches; got {dataset!r}."
        )
    num_examples = _checked_num_examples(num_examples)
    batch_size = _static_batch_size(dataset)
    _check_against_cardinality(dataset, num_examples, batch_size)
    return MinibatchTarget(
        prior_log_prob_fn=prior_log_prob_fn,
        log_likelihood_fn=log_likelihood_fn,
        dataset=dataset,
        num_examples=num_examples,
        batch_size=batch_size,
    )


def _checked_num_examples(num_examples):
    if num_examples is None:
        raise ValueError(
            "`num_examples` is required: the likelihood of a batch of b examples "
            "is scaled by num_examples / b to estimate the full-data sum."
        )
    if isinstance(num_examples, bool) or not isinstance(num_examples, numbers.Integral):
        raise TypeError(
            f"`num_examples` must be a positive Python int; got {num_examples!r}."
        )
    if num_examples < 1:
        raise ValueError(f"`num_examples` must be positive; got {num_examples}.")
    return int(num_examples)


def _static_batch_size(dataset):
    specs = _specs(dataset)
    if any(not s.shape.rank or s.shape[0] is None for s in specs):
        raise ValueError(
            "`dataset` must have a static batch size, so that every batch gets "
            "the scale num_examples / batch_size: a final partial batch would be "
            "scaled wrongly. Batch with `dataset.batch(b, drop_remainder=True)` "
            f"(element spec: {dataset.element_spec})."
        )
    sizes = {s.shape[0] for s in specs}
    if len(sizes) != 1:
        raise ValueError(
            "Every component of `dataset`'s batches must have the same batch "
            f"size; got {sorted(sizes)} (element spec: {dataset.element_spec})."
        )
    if 0 in sizes:
        raise ValueError(
            "`dataset`'s batches must hold at least one example; its element "
            f"spec has batch size 0 ({dataset.element_spec})."
        )
    return sizes.pop()


def _specs(dataset):
    return tf.nest.flatten(dataset.element_spec)


def _check_against_cardinality(dataset, num_examples, batch_size):
    if num_examples < batch_size:
        raise ValueError(
            f"`num_examples={num_examples}` is smaller than the dataset's batch "
            f"size {batch_size}; `num_examples` is the number of examples in the "
            "whole data set, not in a batch."
        )
    cardinality = int(dataset.cardinality())
    if cardinality < 0:  # infinite or unknown: nothing to compare
        return
    if cardinality != num_examples // batch_size:
        raise ValueError(
            f"`num_examples={num_examples}` does not match `dataset`: it has "
            f"{cardinality} batches of {batch_size} ({cardinality * batch_size} "
            f"examples), but one epoch of {num_examples} examples has "
            f"{num_examples // batch_size} full batches. Pass the number of "
            "examples in the data, and one epoch (the fit repeats it)."
        )


def _scaled_log_joint(target, batch, samples, named_samples):
    """`log p(z) + N / b sum_{i in batch} log p(x_i | z)` for `target`'s N, b."""
    prior = target.prior_log_prob_fn(*samples, **named_samples)
    per_example = tf.convert_to_tensor(
        target.log_likelihood_fn(batch, *samples, **named_samples)
    )
    _check_per_example_shape(per_example, target.batch_size)
    likelihood = tf.reduce_sum(per_example, axis=-1)
    return prior + target.scale(likelihood.dtype) * likelihood


def _check_per_example_shape(per_example, batch_size):
    size = per_example.shape[-1:].num_elements() if per_example.shape.rank else 0
    if size != batch_size and not (per_example.shape.rank and size is None):
        raise ValueError(
            "`log_likelihood_fn` must return one log-likelihood per example, "
            f"shaped sample_shape + [{batch_size}]; got shape {per_example.shape}."
        )
