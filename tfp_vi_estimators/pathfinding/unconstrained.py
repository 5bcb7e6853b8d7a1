"""A model's posterior as a log-density on one unconstrained vector.

Pathfinder (and the low-rank surrogate) work on `R^d`. A `JointDistribution`
pinned to its data, or an Inference Gym model, has latent variables that are
a structure of tensors on a constrained support. With `T` the model's default
event-space bijector (unconstrained -> support) and `U` the unflattening map
(`_internal/flattening.py`), the posterior of `x in R^d` is

```none
log p~(x) = log p(T(U(x))) + log |det J_T(U(x))|        (U only reshapes: det 1)
```

as `tfp.experimental.vi`'s builders transform their surrogates with
`default_event_space_bijector`. `UnconstrainedTarget.bijector` (`T o U`)
maps draws of `R^d` back to the model's constrained structure.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import flattening

tfb = tfp.bijectors

__all__ = ["UnconstrainedTarget", "unconstrained_target"]


@dataclasses.dataclass(frozen=True)
class UnconstrainedTarget:
    """A model's unnormalized posterior on `R^d` and the way back.

    Attributes:
      target_log_prob_fn: callable `[..., d] -> [...]`, `log p~(x)` above.
      bijector: `tfb.Bijector` from `[..., d]` to the model's constrained
        structure (`T o U`).
      event_size: `d`.
      dtype: the floating dtype of the model.
      event_shape: the model's (constrained) event shape structure.
    """

    target_log_prob_fn: Callable
    bijector: Any
    event_size: int
    dtype: Any
    event_shape: Any

    def initial_positions(self, num_paths: int | None = None, seed: Any = None):
        """Starting points uniform on `(-2, 2)^d`, as Stan's and [1]'s.

        Args:
          num_paths: `None` for one `[d]` point, else `[num_paths, d]`.
          seed: PRNG seed; see `tfp.random.sanitize_seed`.

        Returns:
          A `Tensor` of the model's dtype.
        """
        shape = [self.event_size] if num_paths is None else [num_paths, self.event_size]
        return tf.random.stateless_uniform(
            shape, tfp.random.sanitize_seed(seed), -2.0, 2.0, self.dtype
        )


def _log_prob_fn(model):
    for name in ("unnormalized_log_prob", "log_prob"):
        if callable(getattr(model, name, None)):
            return getattr(model, name)
    raise TypeError(
        "`model` must be a JointDistribution or an Inference Gym model (with "
        f"`unnormalized_log_prob` or `log_prob`); got {type(model).__name__}."
    )


def _event_space_bijector(model):
    bijector = getattr(model, "default_event_space_bijector", None)
    if bijector is None and callable(
        getattr(model, "experimental_default_event_space_bijector", None)
    ):
        bijector = model.experimental_default_event_space_bijector()
    if bijector is None:
        raise TypeError(
            "`model` must have a `default_event_space_bijector` (Inference Gym) "
            "or `experimental_default_event_space_bijector()` (TFP); "
            f"{type(model).__name__} has neither."
        )
    return flattening.constraining_bijector(bijector)


def _single_dtype(model):
    dtypes = {tf.as_dtype(d) for d in tf.nest.flatten(model.dtype)}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating:
        raise TypeError(
            "`model`'s latent variables must share one floating dtype; got "
            f"{sorted(d.name for d in dtypes)}."
        )
    return next(iter(dtypes))


def unconstrained_target(model: Any) -> UnconstrainedTarget:
    """The posterior of a model as a log-density on `R^d` (see the module doc).

    Args:
      model: a `tfd.JointDistribution` pinned to its observations
        (`jd.experimental_pin(...)`, with `unnormalized_log_prob` and
        `experimental_default_event_space_bijector()`), a `JointDistribution`
        whose every part is latent, or an Inference Gym model
        (`unnormalized_log_prob`, `default_event_space_bijector`,
        `event_shape`, `dtype`), with one floating dtype.

    Returns:
      An `UnconstrainedTarget`.

    Raises:
      TypeError: if `model` lacks what is needed, or mixes dtypes.
    """
    log_prob = _log_prob_fn(model)
    bijector = _event_space_bijector(model)
    dtype = _single_dtype(model)
    shapes = flattening.as_shape_structure(model.event_shape)
    unconstrained = bijector.inverse_event_shape(shapes)
    unflatten = flattening.unflattening_bijector(unconstrained)
    to_model = tfb.Chain([b for b in (bijector, unflatten) if b is not None])

    def target_log_prob_fn(x):
        return log_prob(to_model.forward(x)) + to_model.forward_log_det_jacobian(
            x, event_ndims=1
        )

    return UnconstrainedTarget(
        target_log_prob_fn=target_log_prob_fn,
        bijector=to_model,
        event_size=flattening.flat_size(unconstrained),
        dtype=dtype,
        event_shape=model.event_shape,
    )
