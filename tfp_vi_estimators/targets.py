"""Calling the user's `target_log_prob_fn` as `tfp.vi` calls it, and checking its output."""

import functools
import traceback

import tensorflow as tf

from tfp_vi_estimators._internal.tfp_internals import call_with_structure

__all__ = ["call_target", "check_target_output"]


def call_target(target_log_prob_fn, samples, seed):
    """Calls the target exactly as `tfp.vi` does.

    The samples are passed by TFP's structure rule (`nest_util.call_fn`: a list
    or tuple spread as positional arguments, a dict as keywords, anything else,
    a namedtuple included, as one argument, except the `StructTuple` samples
    of `JointDistributionCoroutine`, which are spread). The target is called
    with `seed=` first and, if that raises, without it; if both raise, a
    `RuntimeError` quotes both errors, as `tfp.vi`'s does. There is no
    shortcut for a signature that cannot take a seed: the call with the seed
    then fails while binding its arguments, before any op, and the error of a
    target that also fails without it must be `tfp.vi`'s `RuntimeError`.
    """
    call = functools.partial(call_with_structure, args=samples)
    try:
        return call(functools.partial(target_log_prob_fn, seed=seed))
    except Exception as error:  # noqa: BLE001 - tfp.vi's detection, exactly
        with_seed = error
    # Called outside the `except` so the second error does not chain the first.
    try:
        return call(target_log_prob_fn)
    except Exception as without_seed:  # noqa: BLE001
        raise RuntimeError(
            f"Attempted to detect if {target_log_prob_fn} requires a `seed`, but "
            f"failed.\nCalling it with seed raised:\n\n{_traceback(with_seed)}\n\n"
            f"Calling it without the seed raised:\n\n{_traceback(without_seed)}"
        ) from None


def check_target_output(target_log_prob, log_prob_spec):
    """The target's log-density, broadcast to one per sample, as `tfp.vi` allows.

    `tfp.vi` accepts a target that returns a scalar, or any shape that
    broadcasts against the surrogate's per-sample log-density; so does this
    function (the value is broadcast to that shape). An output that would
    *enlarge* the loss's shape (per-dimension log-densities `[S, D]` where
    `[S]` is expected, the classic silent bug of hand-written VI) is refused.

    Args:
      target_log_prob: what the target returned.
      log_prob_spec: `tf.TensorSpec` of the surrogate's log-density of the
        same samples.

    Returns:
      `target_log_prob` as a `Tensor` shaped like the surrogate's log-density.

    Raises:
      ValueError: naming `target_log_prob_fn` and both shapes, for an output
        that does not broadcast to one value per sample, or another dtype.
    """
    target_log_prob = tf.convert_to_tensor(
        target_log_prob, dtype_hint=log_prob_spec.dtype
    )
    if target_log_prob.dtype != log_prob_spec.dtype:
        raise ValueError(
            "`target_log_prob_fn` must return the surrogate's log-density dtype "
            f"{log_prob_spec.dtype.name}; got {target_log_prob.dtype.name}."
        )
    shape, expected = target_log_prob.shape, log_prob_spec.shape
    if shape.is_compatible_with(expected):
        return target_log_prob
    try:
        broadcast = tf.broadcast_static_shape(shape, expected)
    except ValueError:
        broadcast = None
    if broadcast is None or not broadcast.is_compatible_with(expected):
        raise ValueError(
            "`target_log_prob_fn` must return one log-density per sample, shaped "
            f"like the surrogate's log_prob {expected} (or a shape that "
            f"broadcasts to it); got {shape}, which "
            + (
                "does not broadcast."
                if broadcast is None
                else f"broadcasts to {broadcast}."
            )
        )
    if expected.is_fully_defined():
        return tf.broadcast_to(target_log_prob, expected)
    return target_log_prob


def _traceback(error):
    return "".join(
        traceback.format_exception(None, value=error, tb=error.__traceback__)
    )
