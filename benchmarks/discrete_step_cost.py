"""Step cost of the discrete-latent estimators against leave-one-out REINFORCE.

One optimizer step (loss, gradients, Adam update of the surrogate's logits,
the decoder and, for RELAX, the control variate) on a Bernoulli VAE-sized
problem: a batch of 32 data points, each with its own mean-field surrogate
over 200 binary latents (or 20 categorical latents of 10 categories), a linear
decoder to 784 Bernoulli pixels (the target), XLA. Every estimator is timed
against `ScoreFunction('leave_one_out')` with the same number of target
evaluations per step (`sample_size` draws of the same surrogate):

```none
DisARM            S = 2       vs  leave-one-out REINFORCE, S = 2
ARMS              S = 4       vs  leave-one-out REINFORCE, S = 4
CategoricalDisARM S = 2       vs  leave-one-out REINFORCE, S = 2 (categorical)
RELAX             S = 2       vs  leave-one-out REINFORCE, S = 2 (MLP control
                                  variate, 64 hidden units, trained in the step)
GumbelRao(M)      S = 2       vs  leave-one-out REINFORCE, S = 2 (straight-
                                  through Bernoulli; its target is differentiated;
                                  M = 1 is plain straight-through, M = 10)
```

Each arm is one compiled function running `--steps` steps in a `tf.while_loop`
(compiled once, before timing). Rounds alternate the two arms of a pair
(rotating which goes first); the table gives the median seconds per step of
each and the ratio of the medians. Data are random binary pixels: the cost
does not depend on them.

    python benchmarks/discrete_step_cost.py [--rounds 7] [--steps 100]
"""

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_vi_estimators as tve
from tfp_vi_estimators import estimators
from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough

tfd = tfp.distributions
BATCH, LATENTS, PIXELS = 32, 200, 784
UNITS, CATEGORIES = 20, 10


class Problem:
    """Surrogate logits per data point and a linear decoder, as variables."""

    def __init__(self, kind):
        rng = np.random.default_rng(0)
        self.kind = kind
        self.pixels = tf.constant(rng.uniform(size=[BATCH, PIXELS]) < 0.3, tf.float32)
        shape = (
            [BATCH, UNITS, CATEGORIES] if kind == "categorical" else [BATCH, LATENTS]
        )
        self.logits = tf.Variable(tf.zeros(shape))
        self.weights = tf.Variable(
            tf.random.stateless_normal([LATENTS, PIXELS], [0, 1]) * 0.05
        )
        self.bias = tf.Variable(tf.zeros([PIXELS]))
        self.variables = [self.logits, self.weights, self.bias]

    def surrogate(self):
        if self.kind == "categorical":
            return tfd.Independent(tfd.OneHotCategorical(logits=self.logits), 1)
        if self.kind == "straight_through":
            return tfd.Independent(
                RelaxedBernoulliStraightThrough(0.5, logits=self.logits), 1
            )
        return tfd.Independent(tfd.Bernoulli(logits=self.logits), 1)

    def target_log_prob(self, latents):
        latents = tf.cast(latents, tf.float32)
        if self.kind == "categorical":
            prior = tf.reduce_sum(latents, [-1, -2]) * -np.log(CATEGORIES)
            latents = tf.reshape(latents, [-1, BATCH, LATENTS])
        else:
            prior = -LATENTS * np.log(2.0)
        logits = tf.einsum("sbl,lp->sbp", latents, self.weights) + self.bias
        likelihood = tfd.Independent(tfd.Bernoulli(logits=logits), 1)
        return prior + likelihood.log_prob(self.pixels)


def runner(kind, estimator, sample_size, steps):
    """A compiled function running `steps` optimizer steps; returns its timer."""
    problem = Problem(kind)
    variables = problem.variables + list(getattr(estimator, "trainable_variables", ()))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(variables)

    def step(i, seed):
        step_seed, seed = tfp.random.split_seed(seed)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(
                tve.monte_carlo_variational_loss(
                    problem.target_log_prob,
                    problem.surrogate(),
                    sample_size=sample_size,
                    gradient_estimator=estimator,
                    seed=step_seed,
                )
            )
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return i + 1, seed

    @tf.function(jit_compile=True, autograph=False)
    def run(seed):
        return tf.while_loop(lambda i, s: i < steps, step, (tf.constant(0), seed))[0]

    seed = tf.constant([1, 2], tf.int32)
    run(seed).numpy()  # compile

    def seconds_per_step():
        start = time.perf_counter()
        run(seed).numpy()
        return (time.perf_counter() - start) / steps

    return seconds_per_step


def _relax():
    control = estimators.MLPControlVariate(LATENTS, hidden_units=64)
    return estimators.RELAX(control)


PAIRS = [
    ("DisARM", "bernoulli", estimators.DisARM, 2),
    ("ARMS (n = 4)", "bernoulli", estimators.ARMS, 4),
    ("CategoricalDisARM", "categorical", estimators.CategoricalDisARM, 2),
    ("RELAX", "bernoulli", _relax, 2),
    ("GumbelRao(1)", "straight_through", lambda: estimators.GumbelRao(1), 2),
    ("GumbelRao(10)", "straight_through", lambda: estimators.GumbelRao(10), 2),
]


def measure(kind, make, sample_size, args):
    reference_kind = "bernoulli" if kind == "straight_through" else kind
    arms = [
        runner(kind, make(), sample_size, args.steps),
        runner(
            reference_kind,
            estimators.ScoreFunction("leave_one_out"),
            sample_size,
            args.steps,
        ),
    ]
    seconds = [[], []]
    for r in range(args.rounds):
        for i in (r % 2, 1 - r % 2):
            seconds[i].append(arms[i]())
    return [statistics.median(s) for s in seconds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    lines = [
        "| estimator | target evaluations per step | ms/step | leave-one-out "
        "REINFORCE, ms/step | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, kind, make, sample_size in PAIRS:
        ours, reference = measure(kind, make, sample_size, args)
        lines.append(
            f"| {name} | {sample_size} x {BATCH} | {ours * 1e3:.2f} "
            f"| {reference * 1e3:.2f} | {ours / reference:.2f} |"
        )
        print(lines[-1], flush=True)
    print(f"\nmedians of {args.rounds} alternating rounds, {args.steps} steps, XLA\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
