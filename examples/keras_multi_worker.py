"""Keras `model.fit` of a surrogate posterior under MultiWorkerMirroredStrategy.

Run one copy of this script per worker, each with its own `TF_CONFIG`
(`{"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker",
"index": i}}`). Every worker builds the same model inside
`strategy.scope()` and calls `model.fit`; the gradients are all-reduced
across workers every step, and `ChiefBackupAndRestore` has the chief
(worker 0) write a backup at the end of every epoch to `--backup-dir`
(shared by all workers), from which a restarted job resumes.

The problem is Bayesian logistic regression (N synthetic rows, D features,
mean-field Normal, Adam 0.05). Without `--minibatch` every step evaluates
all rows (`SurrogatePosteriorModel`, no data); with `--minibatch B` a
`tf.data.Dataset` of minibatches of B rows is sharded across the workers and
`MinibatchSurrogatePosteriorModel` scales the log-likelihood by N / B.

On one machine, two workers:

    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                "task": {"type": "worker", "index": 0}}' \\
        python examples/keras_multi_worker.py --backup-dir /tmp/backup &
    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                "task": {"type": "worker", "index": 1}}' \\
        python examples/keras_multi_worker.py --backup-dir /tmp/backup

Each worker prints (or writes to `--output`) a JSON summary: its index, the
epoch it started from, the loss history, the final variables and the time.
`--kill-at-epoch K` makes worker 1 SIGKILL itself when epoch K begins (for
the fault-tolerance test).
"""

import argparse
import json
import os
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_vi_estimators import keras_models  # noqa: E402
from tfp_vi_estimators.problems import logistic_regression_data  # noqa: E402

tfd = tfp.distributions


def logistic_regression(num_rows, dim, seed=0):
    """Features, labels, prior and per-example log-likelihood."""
    x, y, _ = logistic_regression_data(num_rows, dim, seed)
    prior = tfd.Independent(tfd.Normal(tf.zeros(dim), 1.0), 1)

    def log_likelihood_fn(batch, weights):  # [S, dim] -> [S, batch_size]
        features, labels = batch
        logits = tf.matmul(weights, features, transpose_b=True)
        return tfd.Bernoulli(logits=logits).log_prob(labels)

    return x, y, prior.log_prob, log_likelihood_fn


def build_model(args):
    """The model and its training data (`None` for a data-free fit)."""
    x, y, prior_log_prob, log_likelihood_fn = logistic_regression(args.rows, args.dim)
    surrogate = tfd.Independent(
        tfd.Normal(
            tf.Variable(tf.zeros(args.dim), name="loc"),
            tfp.util.TransformedVariable(
                tf.ones(args.dim), tfp.bijectors.Softplus(), name="scale"
            ),
        ),
        1,
    )
    options = dict(sample_size=args.sample_size, seed=1)
    if not args.minibatch:

        def target_log_prob_fn(weights):
            return prior_log_prob(weights) + tf.reduce_sum(
                log_likelihood_fn((x, y), weights), axis=-1
            )

        model = keras_models.SurrogatePosteriorModel(
            target_log_prob_fn, surrogate, **options
        )
        return model, None
    model = keras_models.MinibatchSurrogatePosteriorModel(
        prior_log_prob, log_likelihood_fn, surrogate, num_examples=args.rows, **options
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(args.rows, seed=0, reshuffle_each_iteration=True)
        .batch(args.minibatch, drop_remainder=True)
    )
    # Checked against `num_examples` before it repeats; under the strategy,
    # Keras shards it across the workers (each takes every other batch).
    model.check_minibatches(dataset)
    return model, dataset.repeat()


class KillAtEpoch(keras.callbacks.Callback):
    """SIGKILLs this process when epoch `epoch` begins (a worker failure)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class EpochTimes(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes tracing)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backup-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--sample-size", type=int, default=8)
    parser.add_argument("--minibatch", type=int, default=0)
    parser.add_argument("--kill-at-epoch", type=int, default=-1)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task_index = strategy.cluster_resolver.task_id
    with strategy.scope():
        model, dataset = build_model(args)
        model.compile(keras.optimizers.Adam(0.05))
    epoch_times = EpochTimes()
    callbacks = [keras_models.ChiefBackupAndRestore(args.backup_dir), epoch_times]
    if args.kill_at_epoch >= 0 and task_index == 1:
        callbacks.append(KillAtEpoch(args.kill_at_epoch))
    start = time.perf_counter()
    history = model.fit(
        dataset,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=callbacks,
        verbose=0,
    )
    summary = {
        "task_index": task_index,
        "initial_epoch": min(history.epoch, default=args.epochs),
        "loss": history.history.get("loss", []),
        "variables": [np.asarray(v).tolist() for v in model.trainable_variables],
        "seconds": time.perf_counter() - start,
        "epoch_seconds": epoch_times.seconds,
        "steps": args.steps_per_epoch * len(history.epoch),
    }
    text = json.dumps(summary)
    if args.output:
        with open(args.output.format(index=task_index), "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
