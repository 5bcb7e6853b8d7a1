"""`fit_surrogate_posterior`: its signature, docstring and argument checks."""

import numbers
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.fitting.checkpoints import _fingerprint
from tfp_vi_estimators.fitting.loop import _FitLoop
from tfp_vi_estimators.fitting.progress import _isatty, _Progress
from tfp_vi_estimators.variational_loss import (
    check_arguments,
    monte_carlo_variational_loss,
)


def _trace_loss(traceable_quantities):
    return traceable_quantities.loss


def fit_surrogate_posterior(
    target_log_prob_fn,
    surrogate_posterior,
    optimizer,
    num_steps,
    convergence_criterion=None,
    trace_fn=_trace_loss,
    discrepancy_fn=kl_reverse,
    sample_size=1,
    importance_sample_size=1,
    trainable_variables=None,
    jit_compile=None,
    seed=None,
    name="fit_surrogate_posterior",
    *,
    gradient_estimator=None,
    stopped_surrogate_posterior=None,
    progress=None,
    checkpoint_dir=None,
    checkpoint_every=None,
):
    """Fits a surrogate posterior by minimizing a Monte Carlo variational loss.

    A drop-in for `tfp.vi.fit_surrogate_posterior`: the positional parameters,
    their defaults and, for the same `seed`, the loss trace are the same. Each
    of `num_steps` optimizer steps minimizes

    ```none
    loss(phi) = 1/S sum_s f(log 1/K sum_k p(z[s, k]) / q_phi(z[s, k])),
    z[s, k] ~ q_phi
    ```

    (the negative ELBO for `f = kl_reverse`, K = 1; the negative IWAE bound for
    K > 1) with the gradient of `gradient_estimator`, using
    `tfp_vi_estimators.monte_carlo_variational_loss`.

    Long fits can be made resumable: with `checkpoint_dir`, the variables, the
    optimizer's state, the step counter, the seed state and the trace so far
    are saved every `checkpoint_every` steps. Calling the function again with
    the same arguments (after a crash, a pre-emption, a `kill -9`) resumes from
    the latest checkpoint, and the final variables and trace equal those of an
    uninterrupted fit. A checkpoint carries a fingerprint of the arguments that
    determine the result; one written with different arguments is refused.
    `num_steps`, `jit_compile`, `progress`, `checkpoint_every` and `name` are
    not in the fingerprint, so a finished fit can be extended by calling again
    with a larger `num_steps`.

    A step whose loss or gradient is not finite is not applied: the fit stops
    with `NonFiniteLossError` naming the step, and the variables keep the
    values of the last finite step.

    Args:
      target_log_prob_fn: Python callable returning the unnormalized target
        log-density of the surrogate's samples (called as `tfp.vi` calls it).
      surrogate_posterior: `tfp.distributions.Distribution` with trainable
        variables.
      optimizer: optimizer with `apply_gradients` (Keras 3, `tf_keras`, or
        legacy `tf_keras` optimizers).
      num_steps: Python integer, the number of optimizer steps.
      convergence_criterion: optional
        `tfp.optimizer.convergence_criteria.ConvergenceCriterion`; once it
        reports convergence the remaining steps are skipped and the trace is
        padded with the last values, as in `tfp.math.minimize`.
        Default value: `None`.
      trace_fn: callable taking `tfp.math.MinimizeTraceableQuantities` and
        returning the (structure of) tensors to trace at every step.
        Default value: trace the loss.
      discrepancy_fn: Csiszar function in log space. Default value:
        `kl_reverse`.
      sample_size: positive integer, the number of Monte Carlo draws per step.
        Default value: `1`.
      importance_sample_size: positive integer, particles per draw for the
        importance-weighted bound. Default value: `1`.
      trainable_variables: optional list of `tf.Variable`s to train. When
        `None`, every trainable variable the loss reads is trained, as in
        `tfp.vi`.
      jit_compile: if `True`, compile the steps with XLA. Default value:
        `None` (no XLA).
      seed: PRNG seed; see `tfp.random.sanitize_seed`. Default value: `None`.
      name: name scope for the ops. Default value: `'fit_surrogate_posterior'`.
      gradient_estimator: keyword-only; a `GradientEstimators` member, a
        `tfp.vi.GradientEstimators` member, or an estimator object from
        `tfp_vi_estimators.estimators`. Default value: `None`, meaning
        REPARAMETERIZATION, which `tfp.vi.fit_surrogate_posterior` forces.
      stopped_surrogate_posterior: keyword-only; optional copy of the
        surrogate with stopped parameters for DOUBLY_REPARAMETERIZED; built
        automatically when `None`.
      progress: keyword-only; `True` to print the step, loss and steps per
        second while fitting (a refreshed line on a terminal, periodic lines
        otherwise), `False` for silence. Default value: `None`, meaning on
        when standard error is a terminal and the `CI` environment variable
        is unset.
      checkpoint_dir: keyword-only; directory for resumable checkpoints.
        Default value: `None` (no checkpoints).
      checkpoint_every: keyword-only; positive integer, steps between
        checkpoints (the last step is always saved). Default value: `None`,
        meaning `max(1, num_steps // 10)` when `checkpoint_dir` is set.

    Returns:
      results: the stacked values of `trace_fn`, each with a leading dimension
        of `num_steps` (a `Tensor` of losses by default).

    Raises:
      TypeError: for an argument of the wrong kind, before any tensor work.
      ValueError: for an argument out of range, for `checkpoint_every` without
        `checkpoint_dir`, for checkpoints or progress requested inside a
        `tf.function`, or for a checkpoint written with different arguments or
        further than `num_steps`.
      NonFiniteLossError: a `FloatingPointError` naming the first step whose
        loss or gradient is not finite.
      CorruptCheckpointError: if the latest checkpoint cannot be read; it is
        not loaded.

    #### References

    [1] Diederik P. Kingma and Max Welling. Auto-encoding variational Bayes.
        ICLR 2014. arXiv:1312.6114.
    [2] George Tucker, Dieterich Lawson, Shixiang Gu and Chris J. Maddison.
        Doubly reparameterized gradient estimators for Monte Carlo objectives.
        ICLR 2019. arXiv:1810.04152.
    """
    checks.check_callable("target_log_prob_fn", target_log_prob_fn)
    checks.check_distribution("surrogate_posterior", surrogate_posterior)
    if not hasattr(optimizer, "apply_gradients"):
        raise TypeError(
            "`optimizer` must be an optimizer with `apply_gradients` (for example "
            f"`keras.optimizers.Adam()`); got {optimizer!r} of type "
            f"{type(optimizer).__name__}."
        )
    num_steps = _static_positive_integer("num_steps", num_steps)
    if convergence_criterion is not None and not (
        hasattr(convergence_criterion, "bootstrap")
        and hasattr(convergence_criterion, "one_step")
    ):
        raise TypeError(
            "`convergence_criterion` must be None or a "
            "tfp.optimizer.convergence_criteria.ConvergenceCriterion; got "
            f"{convergence_criterion!r} of type {type(convergence_criterion).__name__}."
        )
    checks.check_callable("trace_fn", trace_fn)
    _check_trainable_variables(trainable_variables)
    if jit_compile is not None and not isinstance(jit_compile, (bool, np.bool_)):
        raise TypeError(f"`jit_compile` must be None or a bool; got {jit_compile!r}.")
    estimator = check_arguments(
        target_log_prob_fn,
        surrogate_posterior,
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        seed=seed,
        name=name,
        gradient_estimator=(
            GradientEstimators.REPARAMETERIZATION
            if gradient_estimator is None
            else gradient_estimator
        ),
        stopped_surrogate_posterior=stopped_surrogate_posterior,
    )
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"`progress` must be None or a bool; got {progress!r}.")
    if checkpoint_dir is not None and not isinstance(
        checkpoint_dir, (str, os.PathLike)
    ):
        raise TypeError(
            "`checkpoint_dir` must be None or a path (str or os.PathLike); got "
            f"{checkpoint_dir!r} of type {type(checkpoint_dir).__name__}."
        )
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            raise ValueError("`checkpoint_every` needs `checkpoint_dir`.")
        checkpoint_every = _static_positive_integer(
            "checkpoint_every", checkpoint_every
        )
    elif checkpoint_dir is not None:
        checkpoint_every = max(1, num_steps // 10)

    def loss_fn(seed=None):
        return monte_carlo_variational_loss(
            target_log_prob_fn,
            surrogate_posterior,
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=discrepancy_fn,
            gradient_estimator=estimator,
            stopped_surrogate_posterior=stopped_surrogate_posterior,
            seed=seed,
        )

    if not tf.executing_eagerly():
        # Inside a tf.function there is no host to return to between steps:
        # run tfp's loop unchanged, with this package's loss.
        if checkpoint_dir is not None or progress:
            raise ValueError(
                "`checkpoint_dir` and `progress` need eager execution; call "
                "`fit_surrogate_posterior` outside `tf.function` (pass "
                "`jit_compile=True` to compile the steps)."
            )
        return tfp.math.minimize(
            loss_fn,
            num_steps=num_steps,
            optimizer=optimizer,
            convergence_criterion=convergence_criterion,
            trace_fn=trace_fn,
            trainable_variables=trainable_variables,
            jit_compile=jit_compile,
            seed=seed,
            name=name,
        )

    if progress is None:
        progress = "CI" not in os.environ and _isatty(sys.stderr)
    fingerprint = None
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(
            target_log_prob_fn=target_log_prob_fn,
            surrogate_posterior=surrogate_posterior,
            optimizer=optimizer,
            convergence_criterion=convergence_criterion,
            trace_fn=trace_fn,
            discrepancy_fn=discrepancy_fn,
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            estimator=estimator,
            seed=seed,
        )
    with tf.name_scope(name):
        loop = _FitLoop(
            loss_fn,
            optimizer,
            num_steps,
            convergence_criterion,
            trace_fn,
            trainable_variables,
            bool(jit_compile),
            seed,
            chunk_size=_chunk_size(num_steps, progress, checkpoint_every),
        )
        return loop.run(
            progress=_Progress(num_steps, sys.stderr) if progress else None,
            checkpoint_dir=None
            if checkpoint_dir is None
            else os.fspath(checkpoint_dir),
            checkpoint_every=checkpoint_every,
            fingerprint=fingerprint,
        )


def _static_positive_integer(name, value):
    checks.check_positive_integer(name, value)
    if isinstance(value, numbers.Integral):
        return int(value)
    static = tf.get_static_value(value)
    if static is None:
        raise ValueError(f"`{name}` must be known statically (a Python integer).")
    return int(static)


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


def _chunk_size(num_steps, progress, checkpoint_every):
    size = max(1, num_steps - 1)
    if progress:
        size = min(size, max(1, num_steps // 100))
    if checkpoint_every is not None:
        size = min(size, checkpoint_every)
    return size
