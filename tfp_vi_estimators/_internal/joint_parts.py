"""Running a `JointDistribution`'s model with our own step per part.

A joint surrogate draws part by part: each part's distribution is built from
its parents' values, then drawn. The pre-image sampler (`pre_image.py`) and
quasi-Monte Carlo sampling (`quasi_monte_carlo.py`) need to replace that draw
by their own (keep the part's pre-image; push given noise through the part)
while the model builds every distribution exactly as TFP does. TFP runs a
model with a per-part callback, `sample_and_trace_fn(dist, sample_shape,
seed, value)`, which it exposes only through private methods; they are used
here and nowhere else, so a TFP release that changes them breaks one module
(`tests/_internal/test_joint_parts.py` checks each against TFP's own
sampling):

* `_call_execute_model(sample_shape, seed, value, sample_and_trace_fn)`: runs
  the model, under `tf.vectorized_map` when the joint distribution was built
  with `use_vectorized_map=True`; splits the seed per part as TFP's sampling
  does, so a callback that draws as TFP does gives TFP's samples;
* `_model_flatten` / `_model_unflatten`: the parts in the model's order;
* `_get_single_sample_distributions()`: the parts' distributions for one
  draw (their static shapes), which TFP also builds for
  `reparameterization_type`;
* `_reduce_log_probs_over_dists`: the joint log-density from the parts'
  (summed in TFP's order; an auto-batched model first sums each part over the
  batch dimensions it treats as event dimensions).
"""

import dataclasses
from typing import Any

import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    "PartStep",
    "flatten",
    "is_joint",
    "is_vectorized",
    "run_model",
    "single_sample_parts",
    "total_log_prob",
    "unflatten",
]


@dataclasses.dataclass(frozen=True)
class PartStep:
    """What a callback of `run_model` is given for one part.

    Attributes:
      distribution: the part's distribution, built from its parents' values.
      sample_shape: the sample shape TFP would draw it with (`run_model`'s for
        a part without parents, `()` for the others and under
        `tf.vectorized_map`).
      seed: the stateless seed TFP would draw it with.
      value: the value passed for this part to `run_model`, or `None`.
      is_root: the part has no parents (known only without
        `tf.vectorized_map`; `False` there).
    """

    distribution: Any
    sample_shape: Any
    seed: Any
    value: Any
    is_root: bool


def is_joint(distribution) -> bool:
    return isinstance(distribution, tfd.JointDistribution)


def single_sample_parts(joint):
    """The parts' distributions for one draw, in the model's order."""
    return list(joint._get_single_sample_distributions())  # noqa: SLF001


def flatten(joint, structure):
    """A structure shaped like `joint`'s samples, as a list in model order."""
    return list(joint._model_flatten(structure))  # noqa: SLF001


def unflatten(joint, parts):
    """A list in model order, as `joint`'s sample structure."""
    return joint._model_unflatten(parts)  # noqa: SLF001


def total_log_prob(joint, part_log_probs):
    """The joint log-density from the parts' (a list in model order), as TFP."""
    return joint._reduce_log_probs_over_dists(part_log_probs)  # noqa: SLF001


def run_model(joint, step_fn, sample_shape=(), seed=None, value=None):
    """Runs `joint`'s model, with `step_fn(PartStep) -> (value, traced)` per part.

    Args:
      joint: a `tfd.JointDistribution`.
      step_fn: called once per part, in the model's order (at trace time);
        returns the part's value (which its children are built from) and
        anything to collect (tensors only under `tf.vectorized_map`).
      sample_shape: as for `joint.sample`.
      seed: stateless seed, split per part as TFP splits it.
      value: `None`, or a list in model order of per-part values handed to
        `step_fn` (under `tf.vectorized_map`, one slice per draw).

    Returns:
      The list of `traced` in model order.
    """
    vectorized = joint.use_vectorized_map

    def sample_and_trace_fn(dist, sample_shape, seed, value=None):
        is_root = (not vectorized) and tuple(sample_shape) != ()
        step = PartStep(dist, sample_shape, seed, value, is_root)
        return step_fn(step)

    given = None if value is None else unflatten(joint, value)
    return list(
        joint._call_execute_model(  # noqa: SLF001
            sample_shape,
            seed=seed,
            value=given,
            sample_and_trace_fn=sample_and_trace_fn,
        )
    )


def is_vectorized(joint) -> bool:
    """Whether the model runs under `tf.vectorized_map` (one draw per lane)."""
    return bool(joint.use_vectorized_map)
