"""`fit_surrogate_posterior` under MultiWorkerMirroredStrategy.

Every worker runs this script with its own `TF_CONFIG`
(`{"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker",
"index": i}}`), builds the same surrogate inside `strategy.scope()` and calls
`fit_surrogate_posterior`. Each step, each of the R replicas draws
`sample_size / R` samples from its own seed stream; the loss and gradients are
all-reduced (mean) and every worker applies the same update, so all workers
end with the same variables and trace. With `--checkpoint-dir` (a directory
every worker can read: a shared file system, or this machine) the chief writes
resumable checkpoints; a restarted job resumes from the latest one.

On one machine, two workers started by this script:

    python examples/multi_worker_fit.py --local-workers 2

or by hand, one shell per worker:

    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                "task": {"type": "worker", "index": 0}}' \\
        python examples/multi_worker_fit.py --checkpoint-dir /tmp/fit &
    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                "task": {"type": "worker", "index": 1}}' \\
        python examples/multi_worker_fit.py --checkpoint-dir /tmp/fit

Without `TF_CONFIG` and without `--local-workers` the fit runs in this
process, without a strategy. The problem is Bayesian logistic regression
(`--rows` synthetic rows, `--dim` features, a mean-field Normal surrogate,
Adam 0.05). With `--batch-size B` each step reads a global minibatch of B
rows (a `MinibatchTarget`): each of the R replicas reads B / R of them (its
worker's shard) and scales their log-likelihood by rows / (B / R). Each worker prints (or writes to `--output`, where `{index}` is
replaced by its index) a JSON summary: its index, the replica count, the loss
trace, the final variables and the seconds of the fit (and of a warm-up fit
with `--warmup-steps`). `--kill-after-steps K` makes worker 1 run K steps of
the job and then SIGKILL itself (for the fault-tolerance test).
"""

import argparse
import json
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import tfp_vi_estimators as tve  # noqa: E402
from tfp_vi_estimators import local_cluster  # noqa: E402
from tfp_vi_estimators.problems import logistic_regression_data  # noqa: E402

tfd = tfp.distributions


def prior_log_prob(weights):  # [S, dim] -> [S]
    dim = weights.shape[-1]
    return tfd.Independent(tfd.Normal(tf.zeros(dim), 1.0), 1).log_prob(weights)


def log_likelihood(batch, weights):  # ([b, dim], [b]), [S, dim] -> [S, b]
    x, y = batch
    return tfd.Bernoulli(logits=tf.matmul(weights, x, transpose_b=True)).log_prob(y)


def logistic_regression(num_rows, dim, seed=0):
    """The log joint of Bayesian logistic regression on synthetic data."""
    data = logistic_regression_data(num_rows, dim, seed)[:2]

    def target_log_prob_fn(weights):  # [S, dim] -> [S]
        return prior_log_prob(weights) + tf.reduce_sum(
            log_likelihood(data, weights), axis=-1
        )

    return target_log_prob_fn


def minibatched_logistic_regression(num_rows, dim, batch_size, seed=0):
    """The same model read in shuffled global batches of `batch_size` rows.

    The shuffle is seeded: every worker then sees the same order and reads
    its own shard of each global batch, and a restarted job skips to the
    batch where it stopped.
    """
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            logistic_regression_data(num_rows, dim, seed)[:2]
        )
        .shuffle(num_rows, seed=seed)
        .batch(batch_size, drop_remainder=True)
    )
    return tve.minibatch_target(
        prior_log_prob, log_likelihood, dataset, num_examples=num_rows
    )


def surrogate(dim):
    """A mean-field Normal with trainable location and scale."""
    return tfd.Independent(
        tfd.Normal(
            tf.Variable(tf.zeros(dim), name="loc"),
            tfp.util.TransformedVariable(
                tf.ones(dim), tfp.bijectors.Softplus(), name="scale"
            ),
        ),
        1,
    )


def fit(args, num_steps, checkpoint_dir):
    """One fit in a fresh surrogate; returns `(trace, variables, seconds)`."""
    q = surrogate(args.dim)
    start = time.perf_counter()
    if args.batch_size:
        target = minibatched_logistic_regression(args.rows, args.dim, args.batch_size)
    else:
        target = logistic_regression(args.rows, args.dim)
    trace = tve.fit_surrogate_posterior(
        target,
        q,
        keras.optimizers.Adam(0.05),
        num_steps,
        sample_size=args.sample_size,
        seed=(1, 2),
        progress=False,
        jit_compile=args.jit_compile or None,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=args.checkpoint_every if checkpoint_dir else None,
    )
    seconds = time.perf_counter() - start
    return trace, [np.asarray(v).tolist() for v in q.trainable_variables], seconds


def run_worker(args):
    """Runs this process's share of the job; returns its JSON summary."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task_index = strategy.cluster_resolver.task_id
    else:
        strategy, task_index = tf.distribute.get_strategy(), 0
    summary = {"task_index": task_index, "replicas": strategy.num_replicas_in_sync}
    with strategy.scope():
        if args.warmup_steps:
            summary["warmup_seconds"] = fit(args, args.warmup_steps, None)[2]
        num_steps = args.num_steps
        dying = args.kill_after_steps > 0 and task_index == 1
        if dying:
            num_steps = args.kill_after_steps
        trace, variables, seconds = fit(args, num_steps, args.checkpoint_dir)
    if dying:  # a worker failure: the job has more steps to run
        os.kill(os.getpid(), signal.SIGKILL)
    summary.update(
        loss=np.asarray(trace).tolist(), variables=variables, seconds=seconds
    )
    return summary


def run_local_workers(count, argv):
    """Starts `count` workers of this script on loopback ports; waits for them."""
    processes = local_cluster.start_workers([__file__, *argv], count)
    return max(abs(p.wait()) for p in processes)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-workers", type=int, default=0)
    parser.add_argument("--num-steps", type=int, default=200)
    parser.add_argument("--sample-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--kill-after-steps", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.local_workers:
        rest = [a for a in argv if not a.startswith("--local-workers")]
        if "--local-workers" in argv:  # `--local-workers N`, not `--local-workers=N`
            i = argv.index("--local-workers")
            rest = argv[:i] + argv[i + 2 :]
        return run_local_workers(args.local_workers, rest)
    summary = run_worker(args)
    if args.output:
        with open(args.output.format(index=summary["task_index"]), "w") as f:
            json.dump(summary, f)
    else:
        print(
            f"worker {summary['task_index']} of {summary['replicas']} replicas: "
            f"{len(summary['loss'])} steps in {summary['seconds']:.1f} s, final "
            f"loss {summary['loss'][-1]:.2f}, posterior mean "
            f"{np.round(summary['variables'][0][:4], 2).tolist()}..."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
