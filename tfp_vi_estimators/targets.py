"""Calling the user's `target_log_prob_fn` as `tfp.vi` calls it, and checking its output."""

import functools
import inspect

import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["call_target", "check_target_output"]


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


def check_target_output(target_log_prob, log_prob_spec):
    """One log-density per sample, in the surrogate's dtype; checked statically.

    Args:
      target_log_prob: what the target returned.
      log_prob_spec: `tf.TensorSpec` of the surrogate's log-density of the
        same samples.

    Returns:
      `target_log_prob` as a `Tensor`.

    Raises:
      ValueError: naming `target_log_prob_fn`, for another dtype or shape.
    """
    if not tf.is_tensor(target_log_prob):
        target_log_prob = tf.convert_to_tensor(target_log_prob)
    if target_log_prob.dtype != log_prob_spec.dtype:
        raise ValueError(
            "`target_log_prob_fn` must return the surrogate's log-density dtype "
            f"{log_prob_spec.dtype.name}; got {target_log_prob.dtype.name}."
        )
    if not target_log_prob.shape.is_compatible_with(log_prob_spec.shape):
        raise ValueError(
            "`target_log_prob_fn` must return one log-density per sample, shaped "
            f"like the surrogate's log_prob {log_prob_spec.shape}; got "
            f"{target_log_prob.shape}."
        )
    return target_log_prob


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
