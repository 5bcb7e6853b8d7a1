"""A flat vector `[..., d]` and a (nested) structure of event shapes, as a bijector.

Pathfinder and the low-rank surrogate live on one unconstrained vector; a
model's latent variables are a structure of tensors (a dict, a list, a
namedtuple) in a constrained space. The map from the first to the second is

```none
flat [..., d] --Split--> [x_1, .., x_n] --Reshape_i--> shapes --Restructure--> structure
              --event-space bijector--> constrained structure
```

as `tfp.experimental.vi`'s builders build it. A single vector event needs
none of it (`None`).
"""

import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = [
    "as_shape_structure",
    "constraining_bijector",
    "flat_size",
    "unflattening_bijector",
]


def _is_shape(value):
    if isinstance(value, tf.TensorShape):
        return True
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
        )
    return isinstance(value, np.ndarray) and value.ndim == 1


def as_shape_structure(event_shape):
    """`event_shape` (an int, a shape, or a nested structure of shapes) with
    `tf.TensorShape` leaves; an int `d` is the vector shape `[d]`."""
    if isinstance(event_shape, numbers.Integral) and not isinstance(event_shape, bool):
        return tf.TensorShape([int(event_shape)])
    if _is_shape(event_shape):
        return tf.TensorShape([int(v) for v in np.asarray(event_shape, int)])
    if isinstance(event_shape, dict):
        return type(event_shape)(
            (k, as_shape_structure(v)) for k, v in event_shape.items()
        )
    if hasattr(event_shape, "_fields"):
        return type(event_shape)(*(as_shape_structure(v) for v in event_shape))
    if isinstance(event_shape, (list, tuple)):
        return type(event_shape)(as_shape_structure(v) for v in event_shape)
    raise TypeError(
        "`event_shape` must be an int, a shape or a nested structure of shapes; "
        f"got {event_shape!r}."
    )


def _leaves(shapes):
    return tf.nest.flatten(shapes, expand_composites=False)


def flat_size(shapes) -> int:
    """Total number of elements of a structure of fully defined shapes."""
    return int(sum(shape.num_elements() for shape in _leaves(shapes)))


def constraining_bijector(bijector):
    """`None`, one bijector, or a structure of them (`None` leaves: identity)."""
    if bijector is None or isinstance(bijector, tfb.Bijector):
        return bijector
    return tfb.JointMap(
        tf.nest.map_structure(
            lambda b: tfb.Identity() if b is None else b,
            bijector,
            check_types=False,
        )
    )


def unflattening_bijector(shapes):
    """The bijector from `[..., d]` to the structure `shapes`, or `None`.

    Args:
      shapes: a `tf.TensorShape` or a nested structure of them (see
        `as_shape_structure`), fully defined.

    Returns:
      `None` for a single vector shape; a `tfb.Reshape` for a single other
      shape; else `Chain([Restructure, JointMap(Reshape_i), Split])`.
    """
    if isinstance(shapes, tf.TensorShape):
        if shapes.rank == 1:
            return None
        return tfb.Reshape(event_shape_out=shapes, event_shape_in=[flat_size(shapes)])
    leaves = _leaves(shapes)
    sizes = [shape.num_elements() for shape in leaves]
    reshape = tfb.JointMap(
        [
            tfb.Reshape(event_shape_out=shape, event_shape_in=[size])
            for shape, size in zip(leaves, sizes, strict=True)
        ]
    )
    restructure = tfb.Restructure(
        tf.nest.pack_sequence_as(shapes, list(range(len(leaves))))
    )
    return tfb.Chain([restructure, reshape, tfb.Split(sizes)])
