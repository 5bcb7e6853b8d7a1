"""Keras 3 models whose `train_step` minimizes `monte_carlo_variational_loss`.

`model.compile(optimizer)` and `model.fit(...)` then give progress bars,
callbacks (EarlyStopping, TensorBoard, ModelCheckpoint), history, XLA
(`jit_compile=True`) and `tf.distribute` for variational inference:

- `SurrogatePosteriorModel(target_log_prob_fn, surrogate_posterior, ...)`
  fits one surrogate, like `fit_surrogate_posterior`, without user data.
- `MinibatchSurrogatePosteriorModel(prior_log_prob_fn, log_likelihood_fn,
  surrogate_posterior, num_examples=N)` fits a global-latent model from a
  `tf.data.Dataset` of minibatches (stochastic variational inference), the
  library scaling the minibatch log-likelihood by `N / batch_size`.
- `VariationalModel` is the base for amortized models (VAE, IWAE): a subclass
  returns, for a batch of data, the target (with the decoder inside) and the
  surrogate (built from encoder outputs) in `variational_problem`.
- `ChiefBackupAndRestore(backup_dir)`: `BackupAndRestore` for
  `MultiWorkerMirroredStrategy`, the chief writing the backups.

Every step draws a fresh stateless seed from a `keras.random.SeedGenerator`
(saved with the model's weights) and, with several replicas, folds the
replica id into it (`training_step.replica_seed`, the fit's convention too),
so each replica of a distributed step draws independent samples:

```none
seed[t, r] = fold_in(seed_generator.next(), r)     # r: replica id (R > 1)
seed[t]    = seed_generator.next()                 # one replica
loss[t, r] = monte_carlo_variational_loss(..., seed=seed[t, r])
grad[t]    = 1/R sum_r grad loss[t, r]              # all-reduced by the optimizer
```

This module needs Keras 3 with the TensorFlow backend.
"""

import functools

import keras
import tensorflow as tf

from tfp_vi_estimators import minibatch, psis
from tfp_vi_estimators._internal import checks, packed_rows
from tfp_vi_estimators._internal.parameter_maps import CannotCopy, map_tensor_parameters
from tfp_vi_estimators.csiszar import kl_reverse
from tfp_vi_estimators.loss_config import LossConfig, LossSettings, Problem
from tfp_vi_estimators.training_step import (
    EstimatorStateVariables,
    StepState,
    TrainingStep,
    replica_seed,
    unique_variables,
)
from tfp_vi_estimators.variational_loss import evaluate, evaluate_loss

__all__ = [
    "ChiefBackupAndRestore",
    "MinibatchSurrogatePosteriorModel",
    "PSISReport",
    "SurrogatePosteriorModel",
    "VariationalModel",
    "replica_seed",
]


def _check_keras():
    major = int(keras.__version__.split(".")[0])
    if major < 3 or keras.backend.backend() != "tensorflow":
        raise ImportError(
            "tfp_vi_estimators.keras_models needs Keras 3 with the TensorFlow backend; "
            f"found Keras {keras.__version__} with the {keras.backend.backend()!r} "
            "backend (set KERAS_BACKEND=tensorflow)."
        )


_check_keras()


class _SeedStream:
    """The model's step seeds: drawn from its `SeedGenerator`, saved with it.

    A mixin of `VariationalModel`, which creates `self.seed_generator`.
    """

    def step_seed(self):
        """This step's seed: the next from the `SeedGenerator`, per replica."""
        # The generator's state is `[seed, step]` (int64 on TensorFlow); the
        # cast keeps the low 32 bits, plenty for 2**31 steps.
        return replica_seed(tf.cast(self.seed_generator.next(), tf.int32))

    def save_own_variables(self, store):
        """Saves the variables and the seed generator's state.

        Keras saves a layer's seed generators with neither `save_weights` nor
        `save`; this model saves its step seed's state so that a reloaded model
        (or a job resumed by `BackupAndRestore`) continues the seed stream.
        """
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        """Loads what `save_own_variables` saved (files without a seed state too)."""
        keys = [k for k in store.keys() if k != _SEED_STATE_KEY]
        super().load_own_variables({k: store[k] for k in keys})
        if _SEED_STATE_KEY in store.keys():
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])


class VariationalModel(_SeedStream, keras.Model):
    """A Keras model trained by minimizing a Monte Carlo variational loss.

    Subclasses implement `variational_problem(data, training)`, returning the
    target log-density and the surrogate posterior for a batch of `data`; the
    loss is averaged over the batch with `reduce_loss`. For an amortized model
    (VAE, IWAE) the surrogate is built from an encoder's outputs and the target
    calls a decoder:

    ```none
    q(z | x)   = N(z; mu(x), diag(sigma(x)^2))             # encoder
    log p(x, z) = log N(z; 0, I) + log Bernoulli(x; logits(z))  # decoder
    loss(x)    = f(log 1/K sum_k p(x, z_k) / q(z_k | x)),   z_k ~ q(. | x)
    ```

    With `gradient_estimator=DOUBLY_REPARAMETERIZED` and K > 1 the encoder gets
    the doubly reparameterized gradient and the decoder the exact IWAE
    gradient. See `docs/keras.md` and `examples/vae_mnist.py`.

    Args:
      sample_size: positive integer, Monte Carlo draws per step. Default
        value: `1`.
      importance_sample_size: positive integer K, particles per draw.
        Default value: `1`.
      discrepancy_fn: Csiszar function in log space. Default value:
        `kl_reverse`.
      gradient_estimator: a `GradientEstimators` member or estimator object;
        `None` chooses as `monte_carlo_variational_loss` does. Default value:
        `None`.
      seed: Python integer seeding the model's `SeedGenerator`, or `None` for
        a random one. Default value: `None`.
      sampling: `'iid'` or `'rqmc'` (randomized quasi-Monte Carlo base noise),
        as for `monte_carlo_variational_loss`. Default value: `'iid'`.
      **kwargs: passed to `keras.Model` (for example `name`).

    Raises:
      TypeError, ValueError: for a bad loss option, naming it.
    """

    def __init__(
        self,
        *,
        sample_size=1,
        importance_sample_size=1,
        discrepancy_fn=kl_reverse,
        gradient_estimator=None,
        seed=None,
        sampling="iid",
        **kwargs,
    ):
        settings = LossSettings(
            sample_size=sample_size,
            importance_sample_size=importance_sample_size,
            discrepancy_fn=discrepancy_fn,
            gradient_estimator=gradient_estimator,
            sampling=sampling,
        )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be None or a Python int; got {seed!r}.")
        super().__init__(**kwargs)
        self.loss_settings = settings
        self.seed_generator = keras.random.SeedGenerator(seed, name="step_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # Not a Keras-tracked attribute: created at the first step, restarted
        # (from the estimator's initial state) by a reloaded model.
        object.__setattr__(self, "_estimator_state", EstimatorStateVariables())

    def variational_problem(self, data, training=False):
        """Returns `(target_log_prob_fn, surrogate_posterior)` for a batch.

        Args:
          data: the batch given by `fit` / `evaluate` (whatever the dataset
            yields).
          training: Python bool, whether this is a training step.

        Returns:
          target_log_prob_fn: callable as for `monte_carlo_variational_loss`.
          surrogate_posterior: a `tfp.distributions.Distribution`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `variational_problem`."
        )

    def stopped_surrogate_posterior(self, data, surrogate_posterior):
        """Optional stopped copy of the surrogate; `None` builds it automatically."""
        return None

    def reduce_loss(self, loss):
        """Reduces the loss (shape `batch_shape`) to the scalar minimized."""
        return tf.reduce_mean(loss)

    def variational_loss(self, data, seed, training=False):
        """The scalar loss for a batch of `data` with the stateless `seed`.

        Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the
        layers compute in 16 bits, but the loss is computed in float32, as
        Keras computes its own losses: a surrogate built from 16-bit encoder
        outputs is rebuilt with float32 parameters (gradients flow through the
        casts) and a 16-bit target log-density is cast to float32.
        """
        config = self._loss_config(data, training=training)
        return self.reduce_loss(evaluate_loss(config, seed))

    def _loss_config(self, data, training=False):
        """The checked `LossConfig` of the loss for a batch of `data`.

        The surrogate depends on the batch, so the loss's arguments are checked
        (and the estimator resolved) here, once per traced step: in `fit` this
        runs when the step is traced, not at every step it executes.
        """
        return self.loss_settings.config_for(*_problem_in_float32(self, data, training))

    def train_step(self, data):
        self._apply_one_step(data)
        return _logs(self.loss_tracker)

    def _apply_one_step(self, data):
        """One optimizer step on `data`; updates the loss metric.

        The step is `training_step.TrainingStep`, the one every driver runs:
        the estimator's gradients, its state (the adaptive score weight's
        moments) carried in non-trainable variables from step to step.
        """
        step = TrainingStep(
            lambda _, seed, batch: evaluate(
                self._loss_config(batch, training=True), seed
            ),
            self.optimizer,
            lambda: self.trainable_variables,  # the layers are built by the loss
            scalar_fn=lambda loss: _scaled_for_replicas(
                self.optimizer, self.reduce_loss(loss)
            ),
        )
        _, result = step(
            StepState((), (), self._estimator_state), self.step_seed(), data
        )
        self.loss_tracker.update_state(self.reduce_loss(result.loss))

    def test_step(self, data):
        loss = self.variational_loss(data, self.step_seed(), training=False)
        self.loss_tracker.update_state(loss)
        return _logs(self.loss_tracker)

    @property
    def metrics(self):
        return [self.loss_tracker]


class SurrogatePosteriorModel(VariationalModel):
    """`fit_surrogate_posterior` as a Keras model: fit with `model.fit`.

    The surrogate's `tf.Variable`s are adopted as Keras variables (the same
    storage, not copies), so `model.trainable_variables`, the optimizer,
    `save_weights` and `ModelCheckpoint` see them. No data is needed:

    ```python
    model = SurrogatePosteriorModel(target_log_prob_fn, surrogate_posterior,
                                    gradient_estimator=DOUBLY_REPARAMETERIZED)
    model.compile(keras.optimizers.Adam(0.05))
    history = model.fit(epochs=10, steps_per_epoch=100)
    ```

    Each step minimizes `monte_carlo_variational_loss(target_log_prob_fn,
    surrogate_posterior, **loss_options)`; a batch of losses (a batch of
    independent fits) is summed, as `tfp.math.minimize` does.

    Args:
      target_log_prob_fn: Python callable, the unnormalized target
        log-density.
      surrogate_posterior: `tfp.distributions.Distribution` with trainable
        `tf.Variable`s (create them inside `strategy.scope()` to distribute).
      trainable_variables: optional list of `tf.Variable`s to train. Default
        value: `None`, meaning `surrogate_posterior.trainable_variables` plus
        those of `target_log_prob_fn` if it is a `tf.Module`.
      stopped_surrogate_posterior: optional stopped copy of the surrogate;
        built automatically when `None`.
      **loss_options: `sample_size`, `importance_sample_size`,
        `discrepancy_fn`, `gradient_estimator`, `sampling`, `seed` (see
        `VariationalModel`), and `keras.Model` keywords such as `name`.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument.
    """

    def __init__(
        self,
        target_log_prob_fn,
        surrogate_posterior,
        *,
        trainable_variables=None,
        stopped_surrogate_posterior=None,
        **loss_options,
    ):
        super().__init__(**loss_options)
        # Every check the loss makes, now rather than at the first step; the
        # surrogate is fixed, so are the checked options.
        self._checked_options = self.loss_settings.config_for(
            target_log_prob_fn, surrogate_posterior, stopped_surrogate_posterior
        ).options
        trainable_variables = _checked_trainable_variables(
            trainable_variables, target_log_prob_fn, surrogate_posterior
        )
        self.target_log_prob_fn = target_log_prob_fn
        self.surrogate_posterior = surrogate_posterior
        self._stopped_surrogate_posterior = stopped_surrogate_posterior
        # Keras records the strategy in scope at construction in the same way.
        self._single_device = not tf.distribute.has_strategy()
        self._fitting_without_data = False
        # Not Keras-tracked: how data reaches Keras (see `_keras_input`).
        object.__setattr__(self, "_batch_layout", None)
        object.__setattr__(self, "_packed_inputs", ())
        # keras.Variable adopts a tf.Variable it is given (same handle), so the
        # optimizer's updates land in the distribution's own variables.
        self.variational_variables = _adopted(trainable_variables)
        self.built = True

    def variational_problem(self, data, training=False):
        return self.target_log_prob_fn, self.surrogate_posterior

    def _loss_config(self, data, training=False):
        """The options checked at construction, with the float32 problem."""
        problem = Problem(*_problem_in_float32(self, data, training))
        return LossConfig(problem, self._checked_options)

    def train_step(self, data):
        return super().train_step(packed_rows.unpacked(data, self._batch_layout))

    def test_step(self, data):
        return super().test_step(packed_rows.unpacked(data, self._batch_layout))

    def stopped_surrogate_posterior(self, data, surrogate_posterior):
        return self._stopped_surrogate_posterior

    def reduce_loss(self, loss):
        return tf.reduce_sum(loss)

    def call(self, inputs=None, training=False):
        """Draws one sample from the surrogate posterior."""
        return self.surrogate_posterior.sample(seed=self.step_seed())

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`; without `x`, runs `steps_per_epoch` steps per epoch.

        Raises:
          ValueError: if neither `x` nor `steps_per_epoch` is given.
        """
        if x is None and y is None:
            if kwargs.get("steps_per_epoch") is None:
                raise ValueError(
                    "`steps_per_epoch` is required when fitting without data: "
                    "`model.fit(epochs=..., steps_per_epoch=...)`."
                )
            x = self.dummy_dataset()
            kwargs.setdefault("shuffle", False)
            self._fitting_without_data = True
        x, kwargs = _keras_input(self, x, kwargs)
        try:
            return super().fit(x, y, **kwargs)
        finally:
            self._fitting_without_data = False

    def make_train_function(self, force=False):
        """Keras' train function, or, for a data-free fit, one compiled loop.

        Without data (and without a distribution strategy) a step reads
        nothing from the dataset, so each execution of `steps_per_execution`
        steps is one `tf.function` (XLA with `jit_compile=True`) running the
        steps in a `tf.while_loop`, without Keras' iterator, `Optional` and
        nested-function plumbing around every step. Steps, seeds, metrics and
        callbacks are Keras': the same values, in the same order.

        Public Keras API (Keras 3 has users call it with `force=True`; Keras 2
        documented overriding it), its contract kept.
        """
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=True)
        if self.run_eagerly or not self._single_device:
            return self.train_function
        self.train_function = _data_free_or(
            self, self.train_function, _data_free_steps_function(self)
        )
        return self.train_function

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate`; without `x`, averages `steps` (default 1) losses."""
        if x is None and y is None:
            kwargs.setdefault("steps", 1)
            x = self.dummy_dataset()
        x, kwargs = _keras_input(self, x, kwargs)
        return super().evaluate(x, y, **kwargs)

    def dummy_dataset(self):
        """An endless dataset of zeros, one row per replica, for data-free fits."""
        replicas = self.distribute_strategy.num_replicas_in_sync
        return tf.data.Dataset.from_tensors(tf.zeros([replicas, 1])).repeat()


class MinibatchSurrogatePosteriorModel(SurrogatePosteriorModel):
    """Stochastic variational inference from minibatches: fit with `model.fit`.

    For a global-latent model `p(z) prod_{i=1}^N p(x_i | z)` the user gives
    the prior, the per-example log-likelihood and `num_examples = N`; each step
    the library scales the minibatch log-likelihood so that the target, and so
    the loss, is an unbiased estimate of the full-data one:

    ```none
    log p~(z; B) = log p(z) + N / |B| sum_{i in B} log p(x_i | z)
    E_B[log p~(z; B)] = log p(z) + sum_{i=1}^N log p(x_i | z) = log p(z, x)
    ```

    (`B` a uniformly random minibatch; under `tf.distribute` `|B|` is the
    replica's share and the replicas' losses are averaged.) Fit it on a
    `tf.data.Dataset` of minibatches, batched with `drop_remainder=True`:

    ```python
    model = MinibatchSurrogatePosteriorModel(
        prior.log_prob, log_likelihood_fn, surrogate, num_examples=N
    )
    model.compile(keras.optimizers.Adam(0.01))
    model.fit(dataset.shuffle(N).batch(100, drop_remainder=True), epochs=20)
    ```

    `fit` and `evaluate` check the dataset against `num_examples` before any
    step (`check_minibatches`, the checks of `minibatch.minibatch_target`):
    a missing or inconsistent `num_examples` is an error, not a silently
    wrong posterior. References: [1] Hoffman, Blei, Wang,
    Paisley, "Stochastic Variational Inference", JMLR 14, 2013,
    https://jmlr.org/papers/v14/hoffman13a.html.

    Args:
      prior_log_prob_fn: callable, `log p(z)`, called as a target is.
      log_likelihood_fn: callable `log_likelihood_fn(batch, *z)` (or
        `(batch, **z)` for a dict-valued surrogate) returning the per-example
        log-likelihoods, shape `sample_shape + [batch_size]`.
      surrogate_posterior: as for `SurrogatePosteriorModel`.
      num_examples: positive Python int, the number of examples `N`.
      **kwargs: as for `SurrogatePosteriorModel`.

    Raises:
      TypeError, ValueError: for bad arguments, naming the argument.
    """

    def __init__(
        self,
        prior_log_prob_fn,
        log_likelihood_fn,
        surrogate_posterior,
        *,
        num_examples,
        **kwargs,
    ):
        checks.check_callable("prior_log_prob_fn", prior_log_prob_fn)
        checks.check_callable("log_likelihood_fn", log_likelihood_fn)
        super().__init__(prior_log_prob_fn, surrogate_posterior, **kwargs)
        self.prior_log_prob_fn = prior_log_prob_fn
        self.log_likelihood_fn = log_likelihood_fn
        self.num_examples = num_examples

    def variational_problem(self, data, training=False):
        # Under tf.distribute the replica sees its share of the global batch;
        # its static size sets the scale (the dataset was checked by `fit`).
        replica_batch_size = tf.nest.flatten(data)[0].shape[0]
        if replica_batch_size is None:
            raise ValueError(
                "The minibatch has no static batch size; batch the dataset with "
                "`drop_remainder=True`."
            )
        replica_target = minibatch.MinibatchTarget(
            prior_log_prob_fn=self.prior_log_prob_fn,
            log_likelihood_fn=self.log_likelihood_fn,
            dataset=None,  # this batch only: `fit` reads the dataset
            num_examples=self.num_examples,
            batch_size=replica_batch_size,
        )
        return replica_target.target_log_prob_fn(data), self.surrogate_posterior

    def check_minibatches(self, dataset):
        """`minibatch.minibatch_target`'s checks of `dataset` and `num_examples`.

        Raises:
          TypeError, ValueError: for a `dataset` that is not a
            `tf.data.Dataset` of batches of a static size, or a missing or
            inconsistent `num_examples`, naming them.
        """
        minibatch.minibatch_target(
            self.prior_log_prob_fn, self.log_likelihood_fn, dataset, self.num_examples
        )

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit` on a dataset of minibatches, checked first."""
        self.check_minibatches(x)
        return super().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate` on a dataset of minibatches, checked first."""
        self.check_minibatches(x)
        return super().evaluate(x, y, **kwargs)


class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for multi-worker training.

    Keras 3's `BackupAndRestore` has every worker write the same files. Under
    `MultiWorkerMirroredStrategy` (variables are equal on every worker after
    each step) only the chief, the worker whose strategy says
    `extended.should_checkpoint`, writes the backup (and deletes it when
    training ends); every worker restores from it when training begins, so a
    job restarted after a failure resumes on all workers from the chief's last
    backup: weights, optimizer state, the model's seed generator and the epoch.
    `backup_dir` must therefore be one directory every worker can read (a
    shared file system or bucket on a cluster).

    It takes the arguments of `keras.callbacks.BackupAndRestore`: `backup_dir`
    (the path of the backup, the same on every worker), `save_freq`,
    `double_checkpoint`, `delete_checkpoint`.
    """

    def _is_chief(self):
        return self.model.distribute_strategy.extended.should_checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if self._is_chief():
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self._is_chief():
            super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self._is_chief():
            super().on_train_end(logs)


def _scaled_for_replicas(optimizer, loss):
    """The scalar differentiated: the reduced loss, scaled for the optimizer.

    The optimizer sums gradients over replicas: the loss is divided by their
    number so the sum is the mean of the per-replica gradients, as Keras' own
    losses do (and scaled by a mixed-precision `LossScaleOptimizer`).
    """
    scaled = loss / tf.cast(
        tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype
    )
    if hasattr(optimizer, "scale_loss"):
        scaled = optimizer.scale_loss(scaled)
    return scaled


def _logs(loss_tracker):
    """A step's logs: the running mean of the loss."""
    loss = loss_tracker.result()
    if _is_multi_worker(tf.distribute.get_strategy()):
        # Keras 3 reduces multi-worker logs with a mean along axis 0, which a
        # scalar does not have: give it one (of length 1).
        loss = tf.reshape(loss, [1])
    return {"loss": loss}


def _is_multi_worker(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy with a cluster."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.cluster_resolver.cluster_spec().as_dict()
    )


def _keras_input(model, x, kwargs):
    """A model's `x` and `validation_data` as handed to Keras' `fit` / `evaluate`.

    Under a distribution strategy, a dataset of structured batches (such
    as `(features, labels)`) goes to Keras packed, each example one row
    of int32 (`_internal/packed_rows.py`), and `train_step` / `test_step` unpack it
    exactly: Keras 3's `fit` and `evaluate` reduce a first batch across
    replicas with `strategy.reduce`, which under a multi-worker
    `MultiWorkerMirroredStrategy` fails on a structure ("Attempt to
    convert a value ... PerReplica to a Tensor"; see
    tests/test_keras_multi_worker.py) but works on one tensor. (Keras 3.15.1,
    keras/src/backend/tensorflow/trainer.py: `fit` and `evaluate` call
    `_maybe_symbolic_build(iterator=...)`, which passes the first batch,
    whatever its structure, to `strategy.reduce("MEAN", ..., axis=None)`.)
    """
    if any(x is packed for packed in model._packed_inputs):
        return x, kwargs  # `fit`'s validation data, already packed
    layout = None if model._single_device else packed_rows.row_layout(x)
    if layout != model._batch_layout:  # steps traced for another layout
        object.__setattr__(model, "_batch_layout", layout)
        model.train_function = model.test_function = None
    validation_data = kwargs.get("validation_data")
    if layout is not None:
        x = packed_rows.packed(x, layout)
        if validation_data is not None:
            if packed_rows.row_layout(validation_data) != layout:
                raise ValueError(
                    "Under a distribution strategy `validation_data` must be a "
                    "tf.data.Dataset of batches structured as those of `x`; got "
                    f"{validation_data!r}."
                )
            kwargs["validation_data"] = packed_rows.packed(validation_data, layout)
    object.__setattr__(model, "_packed_inputs", (x, kwargs.get("validation_data")))
    return x, kwargs


def _data_free_steps_function(model):
    """A `tf.function` running `steps_per_execution` data-free steps of `model`."""
    steps = int(model.steps_per_execution)
    no_data = tf.zeros([1, 1])

    def one_step(step):
        model._apply_one_step(no_data)
        return step + 1

    @tf.function(jit_compile=model.jit_compile, autograph=False)
    def run_steps():
        if steps == 1:
            model._apply_one_step(no_data)
        else:
            tf.while_loop(lambda step: step < steps, one_step, [tf.constant(0)])
        return _logs(model.loss_tracker)

    return run_steps


def _data_free_or(model, keras_function, data_free_function):
    """Keras' `train_function(iterator)`, bypassed during data-free fits."""

    def train_function(iterator):
        if model._fitting_without_data and not tf.distribute.has_strategy():
            return data_free_function()
        return keras_function(iterator)

    return train_function


class PSISReport(keras.callbacks.Callback):
    """PSIS k-hat of a `SurrogatePosteriorModel`'s surrogate at the end of `fit`.

    Runs `psis.khat_report` with `num_draws` draws of the fitted surrogate:
    keeps `pareto_k` and `message`, prints the message if `verbose`, and issues
    a `psis.PSISWarning` above `psis.khat_threshold(num_draws)` (0.7 at the
    default 4,000 draws; Vehtari et al. 2024). Off unless added to `callbacks`:
    it costs `num_draws` target evaluations.

    Args:
      num_draws: Python integer >= 2. Default value: `4000`.
      seed: stateless seed for the draws, or `None`. Default value: `None`.
      verbose: print the verdict if truthy. Default value: `1`.
    """

    def __init__(self, num_draws=psis.DEFAULT_NUM_DRAWS, seed=None, verbose=1):
        super().__init__()
        self.num_draws = psis.check_num_draws(num_draws)
        self.seed = seed
        self.verbose = verbose
        self.pareto_k = None
        self.message = None

    def on_train_end(self, logs=None):
        if not isinstance(self.model, SurrogatePosteriorModel):
            raise TypeError(
                "`PSISReport` reads the surrogate of a SurrogatePosteriorModel; "
                f"got {type(self.model).__name__}."
            )
        self.pareto_k, self.message = psis.khat_report(
            self.model.target_log_prob_fn,
            self.model.surrogate_posterior,
            self.num_draws,
            self.seed,
        )
        if self.verbose:
            print(self.message)


_SEED_STATE_KEY = "step_seed_state"
_HALF_DTYPES = (tf.float16, tf.bfloat16)


def _problem_in_float32(model, data, training):
    """`(target, surrogate, stopped surrogate)` of a model for a batch, in float32."""
    target_log_prob_fn, surrogate_posterior = model.variational_problem(
        data, training=training
    )
    surrogate_posterior = _in_float32(surrogate_posterior, "surrogate_posterior")
    stopped = model.stopped_surrogate_posterior(data, surrogate_posterior)
    if stopped is not None:
        stopped = _in_float32(stopped, "stopped_surrogate_posterior")
    return _float32_log_prob(target_log_prob_fn), surrogate_posterior, stopped


def _to_float32(tensor):
    return tf.cast(tensor, tf.float32) if tensor.dtype in _HALF_DTYPES else tensor


def _in_float32(distribution, argument):
    """`distribution` itself, or, if any part is 16-bit float, a float32 copy."""
    dtypes = [
        tf.as_dtype(d) for d in tf.nest.flatten(distribution.dtype) if d is not None
    ]
    if not any(d in _HALF_DTYPES for d in dtypes):
        return distribution
    try:
        return map_tensor_parameters(distribution, _to_float32)
    except CannotCopy as e:
        raise ValueError(
            f"The `{argument}` returned for this batch is {distribution.dtype} "
            "(a mixed-precision policy?) and cannot be rebuilt in float32 "
            f"automatically (cannot copy {e}); build it from float32 tensors: give "
            "the encoder's output layer `dtype='float32'` or `tf.cast` its "
            "outputs."
        ) from None


def _float32_log_prob(target_log_prob_fn):
    # `wraps` keeps the name and signature that error messages show.
    @functools.wraps(target_log_prob_fn)
    def target_in_float32(*args, **kwargs):
        return tf.nest.map_structure(_to_float32, target_log_prob_fn(*args, **kwargs))

    return target_in_float32


def _checked_trainable_variables(trainable_variables, target_log_prob_fn, surrogate):
    """The variables to train: as given, or the surrogate's and the target's."""
    if trainable_variables is None:
        trainable_variables = list(surrogate.trainable_variables)
        if isinstance(target_log_prob_fn, tf.Module):
            trainable_variables += list(target_log_prob_fn.trainable_variables)
    else:
        trainable_variables = list(trainable_variables)
        for v in trainable_variables:
            if not isinstance(v, tf.Variable):
                raise TypeError(
                    "`trainable_variables` must contain only tf.Variables; got "
                    f"{v!r} of type {type(v).__name__}."
                )
    if not trainable_variables:
        raise ValueError(
            "`surrogate_posterior` has no trainable variables; build it from "
            "`tf.Variable`s or `tfp.util.TransformedVariable`s, or pass "
            "`trainable_variables`."
        )
    return trainable_variables


def _adopted(trainable_variables):
    """Keras variables adopting the `tf.Variable`s (the same storage, not copies)."""
    return [
        keras.Variable(v, name=_keras_name(v), trainable=True)
        for v in unique_variables(trainable_variables)
    ]


def _keras_name(variable):
    return variable.name.split(":")[0].replace("/", "_") or "variable"
