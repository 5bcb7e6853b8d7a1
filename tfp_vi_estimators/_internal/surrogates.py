"""What counts as a surrogate: a TFP distribution, or anything that behaves as one.

`tfp.vi` accepts any object with a distribution's methods. TFP's own
surrogate builders (`tfp.experimental.vi.build_factored_surrogate_posterior`,
`build_affine_surrogate_posterior`, `build_asvi_surrogate_posterior`,
`tfp.experimental.util.make_trainable`) return a
`tfp.experimental.util.DeferredModule`: a `tf.Module` that rebuilds the
distribution from its variables on every call and forwards attribute access
to it, but is not an instance of `tfd.Distribution`.
"""

import tensorflow_probability as tfp

__all__ = ["REQUIRED_METHODS", "as_distribution", "behaves_as_distribution"]

REQUIRED_METHODS = (
    "sample",
    "log_prob",
    "reparameterization_type",
    "batch_shape",
    "event_shape",
    "dtype",
)


def behaves_as_distribution(value) -> bool:
    """A `tfd.Distribution`, or an object with the attributes the loss uses."""
    if isinstance(value, tfp.distributions.Distribution):
        return True
    return all(hasattr(value, attribute) for attribute in REQUIRED_METHODS)


def as_distribution(value):
    """The `tfd.Distribution` behind `value`: a `DeferredModule` is built now.

    The built distribution reads the module's variables, so gradients reach
    them exactly as through the module; use it for type checks and copies.
    """
    if isinstance(value, tfp.experimental.util.DeferredModule):
        return value._build_module()  # noqa: SLF001 - the documented build step
    return value
