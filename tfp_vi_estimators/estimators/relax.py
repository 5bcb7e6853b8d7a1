"""RELAX: a learned control variate on the relaxation of discrete latents.

For a discrete value `b` with logits `a`, a relaxation `z` with `b = H(z)`
(logistic for a Bernoulli, Gumbel for a categorical; see
`_internal/relaxations.py`) and `z' ~ p(z | b)` drawn again given `b`, any
differentiable control variate `c` gives the unbiased estimate of
Grathwohl et al. [1]

```none
g_a = (f - c(z')) d log q(b) / d a + d c(z) / d a - d c(z') / d a
```

where `d c(z) / d a` differentiates `z = a + noise` at fixed noise and
`d c(z') / d a` the conditional map. Both relaxations are drawn given the
value (`(b, z)` has the joint law of `z` and `H(z)`), two uniform tensors per
value from the sampler. Here `c` is `control_variate(x)`, a network of the
relaxed values `x = sigmoid(z / t)` (Bernoulli) or `softmax(z / t)`
(categorical), flattened and concatenated over the discrete parts:
`[S, K] + batch + [D]`, returning `[S, K] + batch` (summed over particles) or
`[S] + batch`; `t` is `temperature`.

**Training the control variate through the same loss and optimizer.** The
estimator computes `g_a`, and with it the whole `a`-gradient of the draw
`G_a = g_a + f'(L) (-wt_k) d log q(b_k) / d a` (the direct part through
`log q`), inside the loss: an inner `GradientTape` on a stopped copy of the
logits gives `d [c(z) - c(z')] / d a` as a tensor that depends on the control
variate's variables. The per-draw surrogate is

```none
f(L) + sum stop(g_a) a  - stop(...)  +  lambda (V - stop(V)),     V = 1/2 sum G_a^2
```

`stop(g_a) a` hands the surrogate's parameters `g_a` through the live logits
`a`, and nothing to the control variate; `V` is built from stopped logits,
values and `f`, so only the control variate's variables (and a variable
temperature) see it: their gradient is `lambda d V / d phi`, a one-draw
unbiased estimate of `lambda d E[|G_a|^2] / d phi = lambda d Var(G_a) / d phi`
(the mean of `G_a` does not depend on `phi`). One optimizer step on all
variables then moves the surrogate along the RELAX gradient and the control
variate down the variance of the gradient with respect to the logits (per
draw, the quantity minimised in [1] for mean-field surrogates; for an encoder
network its Jacobian reweights it). The value is `f(L)`; the second-order
gradient costs about one more backward pass of the control variate.

Serves `tfd.Bernoulli`, `tfd.Categorical` and `tfd.OneHotCategorical` parts
(batched, in `tfd.Independent`, in any `JointDistribution` whose other parts
are reparameterized: those keep their pathwise gradient), every
`importance_sample_size` and every discrepancy. The control variate's
variables are found by the tape of `fit_surrogate_posterior` (and listed in
its traced `parameters`); a Keras model trains them when they are its
weights (pass `trainable_variables` to `SurrogatePosteriorModel`, or make the
control variate a layer of the model). `fit_surrogate_posterior_stateless`
optimises only its explicit parameters: there the control variate stays as
given (still unbiased).

#### References

[1] Will Grathwohl, Dami Choi, Yuhuai Wu, Geoffrey Roeder and David
    Duvenaud. Backpropagation through the void: Optimizing control variates
    for black-box gradient estimation. ICLR 2018. arXiv:1711.00123.
[2] George Tucker, Andriy Mnih, Chris J. Maddison, Dieterich Lawson and
    Jascha Sohl-Dickstein. REBAR: Low-variance, unbiased gradient estimates
    for discrete latent variable models. NeurIPS 2017. arXiv:1703.07370.
"""

import numbers

import tensorflow as tf

from tfp_vi_estimators._internal import relaxations
from tfp_vi_estimators.estimators import discrete
from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp
from tfp_vi_estimators.estimators.plan import (
    Density,
    DiscreteDraws,
    DiscreteFamily,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)

__all__ = ["MLPControlVariate", "RELAX"]


class MLPControlVariate(tf.Module):
    """`c(x) = w . tanh(W x + b) + c0`, one value per particle.

    The output layer starts at zero (RELAX starts as the score function).

    Args:
      num_inputs: `D`, the relaxed values per particle (Bernoulli units plus
        categorical units times categories, over all discrete parts).
      hidden_units: width of the hidden layer. Default value: `64`.
      dtype: the variables' dtype (the surrogate's). Default value: float32.
      seed: seed of the stateless initialization. Default value: `0`.
      name: module name.
    """

    def __init__(
        self, num_inputs, hidden_units=64, dtype=tf.float32, seed=0, name=None
    ):
        super().__init__(name=name or "mlp_control_variate")
        limit = (6.0 / (num_inputs + hidden_units)) ** 0.5
        self.kernel = tf.Variable(
            tf.random.stateless_uniform(
                [num_inputs, hidden_units], [seed, 0], -limit, limit, dtype=dtype
            ),
            name="kernel",
        )
        self.bias = tf.Variable(tf.zeros([hidden_units], dtype), name="bias")
        self.output_weights = tf.Variable(
            tf.zeros([hidden_units], dtype), name="output_weights"
        )
        self.output_bias = tf.Variable(tf.zeros([], dtype), name="output_bias")

    def __call__(self, x):
        x = tf.cast(x, self.kernel.dtype)
        hidden = tf.tanh(tf.tensordot(x, self.kernel, axes=1) + self.bias)
        return tf.tensordot(hidden, self.output_weights, axes=1) + self.output_bias


def _trainable(obj):
    if isinstance(obj, tf.Variable):
        return [obj] if obj.trainable else []
    return list(getattr(obj, "trainable_variables", ()))


class RELAX(GradientEstimator):
    """Grathwohl et al.'s RELAX for Bernoulli and categorical latents.

    Args:
      control_variate: callable `c(x)` on relaxed values `[S, K] + batch +
        [D]` returning `[S, K] + batch` or `[S] + batch` (for example an
        `MLPControlVariate(D)` or a Keras layer); its variables are trained
        to minimise the gradient's variance when optimized with the rest.
      temperature: positive float, or a variable (trained with the control
        variate), of the relaxation `sigmoid(z / t)` / `softmax(z / t)`.
        Default value: `0.5`.
      variance_weight: `lambda >= 0`, the weight of the variance objective in
        the loss's gradient for the control variate. Adam's steps do not
        depend on it; with SGD it sets the control variate's step size.
        Default value: `1.0`.

    Raises:
      TypeError: if `control_variate` is not callable, or a weight is not a
        number.
      ValueError: if a numeric `temperature` is not positive or
        `variance_weight` is negative.
    """

    def __init__(self, control_variate, temperature=0.5, variance_weight=1.0):
        if not callable(control_variate):
            raise TypeError(
                "`control_variate` must be a callable on relaxed values [S, K] + "
                f"batch + [D]; got {control_variate!r}."
            )
        if isinstance(temperature, numbers.Real) and not temperature > 0:
            raise ValueError(f"`temperature` must be positive; got {temperature}.")
        if not isinstance(variance_weight, numbers.Real) or variance_weight < 0:
            raise ValueError(
                f"`variance_weight` must be a number >= 0; got {variance_weight!r}."
            )
        self.control_variate = control_variate
        self.temperature = temperature
        self.variance_weight = float(variance_weight)
        self.plan = SamplingPlan(
            needs=Needs.NONE,
            layout=Layout.DRAWS_FIRST,
            path_gradient=PathGradient.LIVE,
            densities=frozenset({Density.SURROGATE}),
            discrete=DiscreteDraws(
                families=frozenset(
                    {
                        DiscreteFamily.BERNOULLI,
                        DiscreteFamily.CATEGORICAL,
                        DiscreteFamily.ONE_HOT_CATEGORICAL,
                    }
                ),
                relaxations=2,
            ),
        )

    @property
    def trainable_variables(self):
        """The control variate's trainable variables (and a variable temperature)."""
        return tuple(_trainable(self.control_variate) + _trainable(self.temperature))

    def per_draw_loss(self, log_densities, discrepancy_fn):
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_densities.surrogate))
        batch_rank = f.shape.rank - 1
        gradients, variance = self._gradients(log_densities, discrepancy_fn, f)
        term = tf.zeros_like(f)
        for part, gradient in zip(log_densities.discrete, gradients, strict=True):
            term += discrete.per_draw_sum(
                tf.stop_gradient(gradient) * part.logits, batch_rank
            )
        weight = tf.cast(self.variance_weight, f.dtype)
        return (
            f
            + (term - tf.stop_gradient(term))
            + weight * (variance - tf.stop_gradient(variance))
        )

    def _gradients(self, log_densities, discrepancy_fn, f):
        """`g_a` per part (depends on the control variate), and `V` per draw."""
        parts = log_densities.discrete
        batch_rank = f.shape.rank - 1
        logits = [tf.stop_gradient(part.logits) for part in parts]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(logits)
            at_path, at_conditional = self._control_values(
                parts, logits, tf.shape(log_densities.target)
            )
            difference = tf.reduce_sum(at_path - at_conditional)
        control_gradients = tape.gradient(
            difference, logits, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        direct = _direct_coefficient(log_densities, discrepancy_fn)
        signal = tf.stop_gradient(f) - at_conditional
        gradients, variance = [], tf.zeros_like(f)
        for part, a, control in zip(parts, logits, control_gradients, strict=True):
            score = discrete.unit_score(part, a)
            gradient = discrete.spread(signal, score, batch_rank) * score + control
            total = gradient + discrete.spread(direct, score, batch_rank) * score
            gradients.append(gradient)
            variance += 0.5 * discrete.per_draw_sum(tf.square(total), batch_rank)
        return gradients, variance

    def _control_values(self, parts, logits, particle_shape):
        """`c(z)` (unconditional path) and `c(z')` (conditional map), per draw."""
        temperature = tf.convert_to_tensor(self.temperature, logits[0].dtype)
        at_path, at_conditional = [], []
        for part, a in zip(parts, logits, strict=True):
            cat = part.categorical
            z = relaxations.conditional(a, part.values, part.noise[0], cat)
            z_given = relaxations.conditional(a, part.values, part.noise[1], cat)
            path = relaxations.unconditional_path(z, a, cat)
            flat = tf.concat([particle_shape, [-1]], axis=0)
            at_path.append(tf.reshape(relaxations.soft(path, temperature, cat), flat))
            at_conditional.append(
                tf.reshape(relaxations.soft(z_given, temperature, cat), flat)
            )
        # One call on both sets of inputs, stacked along the draws.
        inputs = tf.concat(
            [tf.concat(at_path, axis=-1), tf.concat(at_conditional, axis=-1)], axis=0
        )
        values = _per_draw(self.control_variate(inputs), particle_shape)
        return tf.split(values, 2, axis=0)

    def __repr__(self):
        return (
            f"RELAX(control_variate={self.control_variate!r}, "
            f"temperature={self.temperature!r}, "
            f"variance_weight={self.variance_weight})"
        )


def _per_draw(values, particle_shape):
    """A control variate's output as `[2S] + batch` (summed over particles)."""
    rank = tf.compat.dimension_value(particle_shape.shape[0])
    values = tf.convert_to_tensor(values)
    if values.shape.rank == rank:
        return tf.reduce_sum(values, axis=1)
    if values.shape.rank == rank - 1:
        return values
    raise ValueError(
        "`control_variate` must return [S, K] + batch or [S] + batch values; got "
        f"shape {values.shape} for inputs of [S, K] + batch = {rank} axes + [D]."
    )


def _direct_coefficient(log_densities, discrepancy_fn):
    """`d f(L) / d log q_k`, `[S, K] + batch`, from stopped densities."""
    log_q = tf.stop_gradient(log_densities.surrogate)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(log_q)
        f = discrepancy_fn(log_mean_exp(tf.stop_gradient(log_densities.target) - log_q))
    return tape.gradient(f, log_q, unconnected_gradients=tf.UnconnectedGradients.ZERO)
