"""Continuous relaxations of discrete values, drawn conditionally on the value.

A Bernoulli value `b` with log-odds `a` is the sign of a logistic variable,
a categorical one the arg-max of Gumbel-perturbed log-probabilities
(`a = log_softmax(logits)`):

```none
Bernoulli:    z = a + Logistic(0, 1),      b = 1[z > 0]
categorical:  z_c = a_c + Gumbel(0, 1),    b = argmax_c z_c
```

`conditional` draws `z ~ p(z | b)` from uniforms `v`, by the inverse CDFs of
Tucker et al. [1] and Grathwohl et al. [2] (`theta = sigmoid(a)`):

```none
Bernoulli:         u' = 1 - theta (1 - v) if b = 1,  v (1 - theta) if b = 0
                   z  = a + log u' - log(1 - u')
categorical:       z_b = -log(-log v_b)
                   z_c = -log(exp(-a_c) (-log v_c) + exp(-z_b)),  c != b
```

Differentiating these maps gives the conditional reparameterization
gradient. `unconditional_path` instead gives a conditionally drawn `z` the
gradient of the unconditional map `z = a + noise` at fixed noise
(`d z / d a = 1`), as the straight-through and RELAX estimators need.

#### References

[1] George Tucker, Andriy Mnih, Chris J. Maddison, Dieterich Lawson and
    Jascha Sohl-Dickstein. REBAR: Low-variance, unbiased gradient estimates
    for discrete latent variable models. NeurIPS 2017. arXiv:1703.07370.
[2] Will Grathwohl, Dami Choi, Yuhuai Wu, Geoffrey Roeder and David
    Duvenaud. Backpropagation through the void: Optimizing control variates
    for black-box gradient estimation. ICLR 2018. arXiv:1711.00123.
"""

import tensorflow as tf

__all__ = [
    "canonical_logits",
    "conditional",
    "conditional_sigmoid",
    "soft",
    "unconditional_path",
]


def canonical_logits(logits, categorical):
    """`a`: the log-odds of a Bernoulli, the log-probabilities of a categorical."""
    return tf.math.log_softmax(logits, axis=-1) if categorical else logits


def conditional(logits, values, uniforms, categorical):
    """`z ~ p(z | values)` from `uniforms` (shaped like `values`), see above."""
    if categorical:
        return _conditional_gumbel(logits, values, uniforms)
    return _conditional_logistic(logits, values, uniforms)


def _uniform_behind(logits, values, uniforms):
    """`u'` and `1 - u'`, `u' ~ U(1 - theta, 1)` if `b = 1`, else `U(0, 1 - theta)`.

    Each is formed without cancellation, so `z = a + log u' - log(1 - u')` is
    accurate in both tails.
    """
    theta, not_theta = tf.sigmoid(logits), tf.sigmoid(-logits)
    below = values * (1.0 - theta * (1.0 - uniforms)) + (1.0 - values) * (
        uniforms * not_theta
    )
    above = values * (theta * (1.0 - uniforms)) + (1.0 - values) * (
        1.0 - uniforms * not_theta
    )
    return below, above


def _conditional_logistic(logits, values, uniforms):
    below, above = _uniform_behind(logits, values, uniforms)
    return logits + tf.math.log(below) - tf.math.log(above)


def conditional_sigmoid(logits, values, uniforms, temperature):
    """`sigmoid(z / t)` for `z ~ p(z | b)` (Bernoulli), in value only.

    `exp(-z / t) = exp((log((1 - u') / u') - a) / t)`: one `log` and one `exp`
    per relaxation, where `conditional` then `soft` take four.
    """
    below, above = _uniform_behind(logits, values, uniforms)
    return tf.math.reciprocal(
        1.0 + tf.exp((tf.math.log(above / below) - logits) / temperature)
    )


def _conditional_gumbel(logits, values, uniforms):
    log_probs = tf.math.log_softmax(logits, axis=-1)
    log_exponentials = tf.math.log(-tf.math.log(uniforms))  # log(-log v)
    top = -tf.reduce_sum(values * log_exponentials, axis=-1, keepdims=True)
    below = -_log_add_exp(log_exponentials - log_probs, -top)
    return tf.where(values > 0.5, top, below)


def _log_add_exp(x, y):
    """`log(exp(x) + exp(y))`, broadcasting."""
    larger = tf.maximum(x, y)
    return larger + tf.math.log1p(tf.exp(-tf.abs(x - y)))


def unconditional_path(z, logits, categorical):
    """`z` in value, with the gradient of `a + noise` at fixed noise."""
    a = canonical_logits(logits, categorical)
    return tf.stop_gradient(z) + (a - tf.stop_gradient(a))


def soft(z, temperature, categorical):
    """The relaxed value: `sigmoid(z / t)` or `softmax(z / t)`."""
    if categorical:
        return tf.math.softmax(z / temperature, axis=-1)
    return tf.sigmoid(z / temperature)
