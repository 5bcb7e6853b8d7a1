"""The fit's own options, checked once when made: `FitArguments`.

`fit_surrogate_posterior` checks the loss's arguments with
`loss_config.check_arguments` (which also resolves the gradient estimator) and
its own (optimizer, steps, criterion, trace, variables, compilation, progress,
checkpoints) by making a `FitArguments`. Both run before any tensor work, so a bad argument leaves
the surrogate untouched.
"""

import dataclasses
import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_vi_estimators._internal import checks


@dataclasses.dataclass(frozen=True)
class FitArguments:
    """The fit's own options, checked when made (the loss's are a `LossConfig`).

    `FitArguments(optimizer=..., num_steps=..., ...)` checks every field
    before any tensor work and raises naming a bad one; the made object is
    frozen, so what was checked is what the fit runs with.

    Attributes:
      optimizer: as passed to `fit_surrogate_posterior`.
      convergence_criterion: as passed, or `None`.
      trace_fn: as passed.
      trainable_variables: as passed, or `None`.
      seed: as passed (checked with the loss's arguments).
      name: as passed.
      num_steps: a Python int (a static integer tensor is read).
      jit_compile: `None` or a bool, as passed.
      progress: `None` (decided when the fit runs), `True` or `False`.
      checkpoint_dir: `None` or a path string.
      checkpoint_every: steps between checkpoints when `checkpoint_dir` is set
        (default `max(1, num_steps // 10)`), else `None`.

    Raises:
      TypeError, ValueError: naming the argument.
    """

    optimizer: Any
    num_steps: int
    convergence_criterion: Any = None
    trace_fn: Callable = dataclasses.field(default=lambda quantities: quantities.loss)
    trainable_variables: Any = None
    jit_compile: bool | None = None
    seed: Any = None
    name: str = "fit_surrogate_posterior"
    progress: bool | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None

    def __post_init__(self):
        checks.check_name(self.name)
        _check_optimizer(self.optimizer)
        num_steps = _static_positive_integer("num_steps", self.num_steps)
        check_convergence_criterion(self.convergence_criterion)
        checks.check_callable("trace_fn", self.trace_fn)
        _check_trainable_variables(self.trainable_variables)
        check_optional_bool("jit_compile", self.jit_compile)
        check_optional_bool("progress", self.progress)
        checkpoint_dir = _checked_checkpoint_dir(self.checkpoint_dir)
        every = _checked_checkpoint_every(
            self.checkpoint_every, checkpoint_dir, num_steps
        )
        # The normalized values, set once here (the object is frozen after).
        object.__setattr__(self, "num_steps", num_steps)
        object.__setattr__(self, "checkpoint_dir", checkpoint_dir)
        object.__setattr__(self, "checkpoint_every", every)


def _check_optimizer(optimizer):
    if not hasattr(optimizer, "apply_gradients"):
        raise TypeError(
            "`optimizer` must be an optimizer with `apply_gradients` (for example "
            f"`keras.optimizers.Adam()`); got {optimizer!r} of type "
            f"{type(optimizer).__name__}."
        )


def _static_positive_integer(name, value):
    checks.check_positive_integer(name, value)
    if isinstance(value, numbers.Integral):
        return int(value)
    static = tf.get_static_value(value)
    if static is None:
        raise ValueError(f"`{name}` must be known statically (a Python integer).")
    return int(static)


def check_convergence_criterion(criterion):
    if criterion is None or (
        hasattr(criterion, "bootstrap") and hasattr(criterion, "one_step")
    ):
        return
    raise TypeError(
        "`convergence_criterion` must be None or a "
        "tfp.optimizer.convergence_criteria.ConvergenceCriterion; got "
        f"{criterion!r} of type {type(criterion).__name__}."
    )


def _check_trainable_variables(trainable_variables):
    if trainable_variables is None:
        return
    if isinstance(trainable_variables, (str, bytes)) or not hasattr(
        trainable_variables, "__iter__"
    ):
        raise TypeError(
            "`trainable_variables` must be None or a list of tf.Variables; got "
            f"{trainable_variables!r}."
        )
    for v in tf.nest.flatten(list(trainable_variables)):
        if not isinstance(v, tf.Variable):
            raise TypeError(
                "`trainable_variables` must contain only tf.Variables; got "
                f"{v!r} of type {type(v).__name__}."
            )


def check_optional_bool(name, value):
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be None or a bool; got {value!r}.")


def _checked_checkpoint_dir(checkpoint_dir):
    """`None` or the directory as a string."""
    if checkpoint_dir is None:
        return None
    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(
            "`checkpoint_dir` must be None or a path (str or os.PathLike); got "
            f"{checkpoint_dir!r} of type {type(checkpoint_dir).__name__}."
        )
    return os.fspath(checkpoint_dir)


def _checked_checkpoint_every(checkpoint_every, checkpoint_dir, num_steps):
    """Steps between checkpoints: as given, `max(1, num_steps // 10)`, or `None`."""
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
        return _static_positive_integer("checkpoint_every", checkpoint_every)
    if checkpoint_dir is not None:
        return max(1, num_steps // 10)
    return None
