"""`fit_surrogate_posterior`: check the arguments once, then run the steps.

Eagerly the steps run in `loop.run_fit` (compiled chunks, with the progress
line, checkpoints and the k-hat report as callbacks between them); inside a
`tf.function`, in `tfp.math.minimize`.
Either way each step evaluates `variational_loss.evaluate_loss` on the one
`LossConfig` checked up front. Inside a `tf.distribute` scope the eager loop
runs each step on every replica (`distributed.py`).
"""

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import psis
from tfp_vi_estimators._internal import checks
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.fitting import distributed
from tfp_vi_estimators.fitting.arguments import FitArguments
from tfp_vi_estimators.fitting.callbacks import (
    CheckpointCallback,
    KhatCallback,
    ProgressCallback,
)
from tfp_vi_estimators.fitting.checkpoints import _fingerprint
from tfp_vi_estimators.fitting.loop import run_fit
from tfp_vi_estimators.fitting.progress import _isatty
from tfp_vi_estimators.loss_config import (
    LossConfig,
    LossOptions,
    LossSettings,
    Problem,
    check_problem,
)
from tfp_vi_estimators.minibatch import MinibatchTarget
from tfp_vi_estimators.variational_loss import evaluate


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
    sampling="iid",
    psis_num_draws=None,
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
    uninterrupted fit (a minibatched fit also saves its data iterator). A
    checkpoint carries a fingerprint of the arguments that determine the
    result; one written with different arguments is refused.
    `num_steps`, `jit_compile`, `progress`, `checkpoint_every` and `name` are
    not in the fingerprint, so a finished fit can be extended by calling again
    with a larger `num_steps`.

    A step whose loss or gradient is not finite is not applied: the fit stops
    with `NonFiniteLossError` naming the step, and the variables keep the
    values of the last finite step.

    Called inside `strategy.scope()` of a `tf.distribute.MirroredStrategy` or
    `MultiWorkerMirroredStrategy` (with the surrogate's variables created in
    the scope), each step runs on every replica with `strategy.run`.
    `sample_size` is the global number of draws: each of the R replicas draws
    `sample_size / R` from its own seed stream (`fold_in(seed[t], replica_id)`
    of the step's seed), and the loss and gradients are averaged across
    replicas (an all-reduce), so the gradient has the distribution of the
    single-process estimator with `sample_size` draws. The update is applied
    once per step, alike on every replica; the non-finite guard reads the
    all-reduced values, so every replica stops at the same step. Every worker
    ends with the same variables and returns the same trace. With
    `checkpoint_dir` (a path every worker can read) only the chief's
    checkpoints are kept; the other workers write theirs to temporary
    directories, as tf.distribute asks. With one replica (no strategy or a
    one-device strategy) the fit is the single-process one, bit for bit.
    A `MinibatchTarget`'s batch size is the global one: each replica reads
    `batch_size / R` examples of every batch (under
    `MultiWorkerMirroredStrategy`, its worker's shard of the data) and scales
    them by `num_examples / (batch_size / R)`. A distributed data iterator
    cannot be saved, so a resumed fit skips the batches already read: the
    same ones when the dataset's order is deterministic (a seeded shuffle,
    which sharding across workers needs too).

    Args:
      target_log_prob_fn: Python callable returning the unnormalized target
        log-density of the surrogate's samples (called as `tfp.vi` calls it),
        or a `tfp_vi_estimators.minibatch.MinibatchTarget`: each step then
        reads the next batch of its (repeated) dataset and scales the batch's
        log-likelihood by `num_examples / batch_size` (stochastic VI [3]).
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
      sampling: keyword-only; `'iid'` or `'rqmc'` (randomized quasi-Monte
        Carlo base noise), as for `monte_carlo_variational_loss`. Default
        value: `'iid'`.
      psis_num_draws: keyword-only; a Python integer >= 2 to compute the PSIS
        k-hat of the fitted surrogate with that many draws when an eager fit
        ends (`psis.khat_report`, on a seed stream of its own): the verdict is
        printed with the progress line, and a `psis.PSISWarning` is issued
        above `psis.khat_threshold(psis_num_draws)`. Default value: `None`
        (off: it costs that many target evaluations).

    Returns:
      results: the stacked values of `trace_fn`, each with a leading dimension
        of `num_steps` (a `Tensor` of losses by default).

    Raises:
      TypeError: for an argument of the wrong kind, before any tensor work.
      ValueError: for an argument out of range, for `checkpoint_every` without
        `checkpoint_dir`, for checkpoints, progress or a `MinibatchTarget`
        inside a `tf.function`, or for a checkpoint written with different
        arguments or further than `num_steps`. Inside the scope of a
        `tf.distribute` strategy with R > 1 replicas: for a `sample_size` that
        is not a multiple of R (the error names both) or leaves a replica
        fewer draws than the gradient estimator needs, for a
        `MinibatchTarget` whose batch size is not a multiple of R, or for a
        call inside a `tf.function`.
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
    [3] Matthew D. Hoffman, David M. Blei, Chong Wang and John Paisley.
        Stochastic variational inference. JMLR 14, 2013. arXiv:1206.7051.
    """
    settings = LossSettings(
        sample_size=sample_size,
        importance_sample_size=importance_sample_size,
        discrepancy_fn=discrepancy_fn,
        gradient_estimator=(  # `tfp.vi.fit_surrogate_posterior` forces this one
            GradientEstimators.REPARAMETERIZATION
            if gradient_estimator is None
            else gradient_estimator
        ),
        sampling=sampling,
    )
    loss = _checked_fit_loss(
        target_log_prob_fn,
        surrogate_posterior,
        stopped_surrogate_posterior,
        settings.options_for(surrogate_posterior),
    )
    checks.check_seed(seed)
    minibatch = loss.minibatch
    if psis_num_draws is not None:
        psis.check_num_draws(psis_num_draws, "psis_num_draws")
        if minibatch is not None:
            raise ValueError(
                "`psis_num_draws` needs the full-data target; with a "
                "`MinibatchTarget` call `psis.psis_diagnostic` on it after the fit."
            )
    arguments = FitArguments(
        optimizer=optimizer,
        num_steps=num_steps,
        convergence_criterion=convergence_criterion,
        trace_fn=trace_fn,
        trainable_variables=trainable_variables,
        jit_compile=jit_compile,
        seed=seed,
        name=name,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    share = distributed.fit_strategy(loss.options, minibatch, tf.executing_eagerly())
    if not tf.executing_eagerly():
        return _fit_in_graph(loss, arguments, psis_num_draws)
    return _fit_eagerly(loss, arguments, share, psis_num_draws)


def _shows_progress(progress):
    """`progress` as given, or for `None` whether stderr is a terminal outside CI."""
    if progress is None:
        return "CI" not in os.environ and _isatty(sys.stderr)
    return progress


@dataclasses.dataclass(frozen=True)
class _FitLoss:
    """The fit's loss: its checked options, the surrogate and the target.

    With a `MinibatchTarget` each step's target is its batch's
    (`minibatch.target_log_prob_fn(batch)`); `target_log_prob_fn` is then
    `None`.
    """

    options: LossOptions
    surrogate_posterior: Any
    stopped_surrogate_posterior: Any
    target_log_prob_fn: Callable | None
    minibatch: MinibatchTarget | None

    @property
    def estimator(self):
        return self.options.estimator

    def at(self, batch=None) -> LossConfig:
        """The `LossConfig` of a step (of its `batch` with a minibatch)."""
        target = self.target_log_prob_fn
        if self.minibatch is not None:
            target = self.minibatch.target_log_prob_fn(batch)
        problem = Problem(
            target, self.surrogate_posterior, self.stopped_surrogate_posterior
        )
        return LossConfig(problem, self.options)

    def of_replica(self, share) -> "_FitLoss":
        """The loss one replica computes (`distributed.ReplicaShare`: its
        share of the draws and of each batch, checked by `fit_strategy`)."""
        return _FitLoss(
            share.options,
            self.surrogate_posterior,
            self.stopped_surrogate_posterior,
            self.target_log_prob_fn,
            share.minibatch,
        )

    def evaluate_fn(self, seed=None, batch=None):
        """One step's `LossEvaluation`; `batch` is `None` without data."""
        return evaluate(self.at(batch), seed)


def _checked_fit_loss(target_log_prob_fn, surrogate, stopped, options):
    """The `_FitLoss`: the problem checked (a `MinibatchTarget` was checked
    by `minibatch_target`), with the checked `options`."""
    if isinstance(target_log_prob_fn, MinibatchTarget):
        checks.check_stopped_surrogate(surrogate, stopped)
        return _FitLoss(options, surrogate, stopped, None, target_log_prob_fn)
    problem = check_problem(target_log_prob_fn, surrogate, stopped)
    return _FitLoss(options, surrogate, stopped, problem.target_log_prob_fn, None)


def _fit_in_graph(loss, arguments, psis_num_draws=None):
    """`tfp.math.minimize` unchanged, with this package's loss.

    Inside a `tf.function` there is no host to return to between steps, so
    neither progress nor checkpoints (nor data, nor the PSIS report).
    """
    if loss.minibatch is not None:
        raise ValueError(
            "A `MinibatchTarget` needs eager execution; call "
            "`fit_surrogate_posterior` outside `tf.function` (pass "
            "`jit_compile=True` to compile the steps)."
        )
    if psis_num_draws is not None:
        raise ValueError("`psis_num_draws` needs eager execution.")
    if loss.estimator.carries_state:
        raise ValueError(
            f"{loss.estimator!r} learns from step to step, which the fit "
            "does only when called eagerly: call `fit_surrogate_posterior` "
            "outside `tf.function` (pass `jit_compile=True` to compile the "
            "steps), or use `fit_surrogate_posterior_stateless`."
        )
    if arguments.checkpoint_dir is not None or arguments.progress:
        raise ValueError(
            "`checkpoint_dir` and `progress` need eager execution; call "
            "`fit_surrogate_posterior` outside `tf.function` (pass "
            "`jit_compile=True` to compile the steps)."
        )
    return tfp.math.minimize(
        lambda seed=None: loss.evaluate_fn(seed).loss,
        num_steps=arguments.num_steps,
        optimizer=arguments.optimizer,
        convergence_criterion=arguments.convergence_criterion,
        trace_fn=arguments.trace_fn,
        trainable_variables=arguments.trainable_variables,
        jit_compile=arguments.jit_compile,
        seed=arguments.seed,
        name=arguments.name,
    )


def _fit_eagerly(loss, arguments, share, psis_num_draws):
    """Compiled chunks of steps, with the callbacks in between (`loop.run_fit`).

    Under a strategy with several replicas each step evaluates one replica's
    `share` (`sample_size / R` draws, `b / R` examples) on every replica; the
    fingerprint keeps the whole `loss`.
    """
    progress = _shows_progress(arguments.progress)
    callbacks = []
    if progress:
        callbacks.append(ProgressCallback(arguments.num_steps, sys.stderr))
    if arguments.checkpoint_dir is not None:
        callbacks.append(
            CheckpointCallback(
                arguments.checkpoint_dir,
                arguments.checkpoint_every,
                _fingerprint_of(loss, arguments),
            )
        )
    if psis_num_draws is not None:
        callbacks.append(
            KhatCallback(loss.at(), psis_num_draws, arguments.seed, progress)
        )
    with tf.name_scope(arguments.name):
        return run_fit(
            loss.of_replica(share).evaluate_fn,
            loss.estimator,
            arguments,
            max_chunk=_max_chunk(
                arguments.num_steps, progress, arguments.checkpoint_every
            ),
            callbacks=callbacks,
            dataset=None
            if loss.minibatch is None
            else loss.minibatch.repeated_dataset(),
            strategy=share.strategy,
            surrogate_variables=loss.surrogate_posterior.trainable_variables,
        )


def _fingerprint_of(loss, arguments):
    """The checkpoints' fingerprint of the arguments, or `None` without them."""
    if arguments.checkpoint_dir is None:
        return None
    return _fingerprint(
        target_log_prob_fn=loss.target_log_prob_fn
        if loss.minibatch is None
        else loss.minibatch.log_likelihood_fn,
        surrogate_posterior=loss.surrogate_posterior,
        optimizer=arguments.optimizer,
        convergence_criterion=arguments.convergence_criterion,
        trace_fn=arguments.trace_fn,
        discrepancy_fn=loss.options.discrepancy_fn,
        sample_size=loss.options.sample_size,
        importance_sample_size=loss.options.importance_sample_size,
        estimator=loss.estimator,
        seed=arguments.seed,
        sampling=loss.options.sampling,
    )


def _max_chunk(num_steps, progress, checkpoint_every):
    """The most steps of one compiled call (the rows of its trace buffer).

    Without progress or checkpoints the whole fit is one call. With progress,
    the loop sizes chunks by time, up to a tenth of the fit (so a large trace
    is not copied whole per chunk); with checkpoints, up to `checkpoint_every`.
    """
    size = num_steps
    if progress:
        size = min(size, max(1, num_steps // 10))
    if checkpoint_every is not None:
        size = min(size, checkpoint_every)
    return size
