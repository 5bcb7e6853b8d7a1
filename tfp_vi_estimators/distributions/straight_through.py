"""Relaxed straight-through categorical and Bernoulli distributions.

Samples are hard (one-hot / 0-1) in the forward pass and carry the gradient
of the relaxed (Concrete / Gumbel-softmax) sample in the backward pass.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import tfp_internals
from tfp_vi_estimators._internal.tfp_internals import prefer_static as ps
from tfp_vi_estimators.distributions import construction, validation

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "RelaxedBernoulliStraightThrough",
    "RelaxedOneHotCategoricalStraightThrough",
]

_PAIRING_DOC = """
    #### `log_prob` and the soft value behind a hard sample

    `log_prob(x)` is the discrete pmf of the hard values, `{pmf}`, the exact
    law of the values `sample()` returns, for every `x`. It is written
    linearly in the value, so a gradient with respect to the value exists
    (straight-through style; `tfd.OneHotCategorical` would stop it). The
    relaxed density is not used there because it is degenerate (infinite or
    NaN) at the vertices where hard values live.

    The relaxed density at the soft value behind a sample is returned with the
    sample, never looked up from it: `experimental_sample_and_log_prob` (what
    `tfp.vi` and the library's reparameterized losses call) returns it,
    computed in log / logit space (stable where the density at the rounded
    soft value would overflow), with the gradient flowing through the soft
    value as well as the parameters. `sample_with_pre_image` returns the
    samples with their pre-image (the relaxed sample in log / logit space),
    and `log_prob_of_pre_image(pre_image)` scores a pre-image under any
    instance's own parameters (the copy with stopped parameters that the
    doubly reparameterized estimators read): the pre-image hook of the
    library's sampler (`_internal/pre_image.py`).

    #### Bias

    Straight-through gradients are biased by design [3]: the backward pass
    differentiates the relaxed sample while the forward pass uses the hard
    one, and the bias does not shrink with more samples. Lower temperatures
    bring the relaxed sample closer to the hard one (less bias) at the price
    of larger gradient variance.
"""

_REFERENCES = """
    #### References

    [1]: Eric Jang, Shixiang Gu and Ben Poole. Categorical Reparameterization
         with Gumbel-Softmax. 2016. https://arxiv.org/abs/1611.01144
    [2]: Chris J. Maddison, Andriy Mnih and Yee Whye Teh. The Concrete
         Distribution: A Continuous Relaxation of Discrete Random Variables.
         2016. https://arxiv.org/abs/1611.00712
    [3]: Yoshua Bengio, Nicholas Leonard and Aaron Courville. Estimating or
         Propagating Gradients Through Stochastic Neurons for Conditional
         Computation. 2013. https://arxiv.org/abs/1308.3432
"""


class _RelaxedStraightThrough(construction.FullyReparameterizedDistribution):
    """Shared machinery; subclasses say how to sample and score the pre-image."""

    _logits_event_ndims: int  # 1 for one-hot categorical, 0 for Bernoulli.
    discrete_family: str  # the hard values' family, for the discrete samplers

    def __init__(
        self,
        temperature: Any,
        logits: Any = None,
        probs: Any = None,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str | None = None,
    ) -> None:
        """Builds the distribution.

        Args:
          temperature: positive floating `Tensor` broadcastable to the batch
            shape.
          logits: floating `Tensor`: unnormalized log-probabilities of shape
            `batch_shape + [K]` for the one-hot categorical, the log-odds of 1
            (shape `batch_shape`) for the Bernoulli. Exactly one of `logits`
            and `probs`.
          probs: floating `Tensor` shaped like `logits`: probabilities that sum
            to 1 over the last axis (categorical), the probability of 1
            (Bernoulli).
          validate_args: Python `bool`; check parameters at run time.
          allow_nan_stats: Python `bool`; as in every TFP distribution.
          name: Python `str` name for the ops. Default value: `None`, the
            class name.

        Raises:
          TypeError: if `temperature` is None, or an argument is non-floating,
            or the arguments have different dtypes.
          ValueError: if not exactly one of `logits` and `probs` is given, if
            the categorical's has static rank 0, or if statically known
            `temperature` is not positive or `probs` lies outside [0, 1].
        """
        parameters = dict(locals())
        parameters["name"] = name or type(self).__name__
        _check_relaxed_arguments(
            type(self),
            type(self).__name__,
            parameters["temperature"],
            parameters["logits"],
            parameters["probs"],
        )
        self._initialize(parameters, ("temperature", "logits", "probs"))

    @property
    def temperature(self):
        """The relaxation temperature."""
        return self._temperature

    @property
    def logits(self):
        """The `logits` argument (None if `probs` was given)."""
        return self._logits

    @property
    def probs(self):
        """The `probs` argument (None if `logits` was given)."""
        return self._probs

    def logits_parameter(self, name: str | None = None) -> tf.Tensor:
        """Logits computed from whichever of `logits` / `probs` was given.

        For the Bernoulli, the log-odds of 1.
        """
        with self._name_and_control_scope(name or "logits_parameter"):
            return self._hard_distribution().logits_parameter()

    def probs_parameter(self, name: str | None = None) -> tf.Tensor:
        """Probabilities computed from whichever of `logits` / `probs` was given.

        For the Bernoulli, the probability of 1.
        """
        with self._name_and_control_scope(name or "probs_parameter"):
            return self._hard_distribution().probs_parameter()

    def sample_with_pre_image(self, sample_shape=(), seed=None):
        """Samples and their pre-image (the relaxed sample in log / logit space).

        Args:
          sample_shape: the shape of the samples drawn.
          seed: PRNG seed; see `tfp.random.sanitize_seed`.

        Returns:
          `(samples, pre_image)`: the hard samples (with the relaxed sample's
          gradient) and the pre-image they were rounded from, which
          `log_prob_of_pre_image` scores.
        """
        with self._name_and_control_scope("sample_with_pre_image"):
            return self._sample_with_pre_image(sample_shape, seed)

    def log_prob_of_pre_image(self, pre_image):
        """The relaxed log-density at the soft value of `pre_image`, under this
        instance's parameters (differentiable in both)."""
        with self._name_and_control_scope("log_prob_of_pre_image"):
            return self._relaxed_log_prob_of_preimage(pre_image)

    def _sample_with_pre_image(self, sample_shape, seed):
        preimage = self._preimage_distribution().sample(sample_shape, seed=seed)
        soft = self._soft_from_preimage(preimage)
        hard = tf.stop_gradient(self._hard_from_preimage(preimage))
        # Equals `hard` exactly in value (soft - soft is 0); its gradient is soft's.
        return hard + (soft - tf.stop_gradient(soft)), preimage

    def _call_sample_n(self, sample_shape, seed, **kwargs):
        # The pre-image distribution handles `sample_shape` itself.
        return self._sample_with_pre_image(sample_shape, seed)[0]

    def _sample_and_log_prob(self, sample_shape, seed, **kwargs):
        sample, preimage = self._sample_with_pre_image(sample_shape, seed)
        return sample, self._relaxed_log_prob_of_preimage(preimage)

    def _log_prob(self, x):
        return self._pmf_log_prob(x)

    def _mean(self):
        # Mean of the hard samples, whose law is the discrete pmf.
        return self._hard_distribution().mean()

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        assertions = []
        if is_init != tfp_internals.has_reference_semantics(self._temperature):
            assertions.append(
                tf.debugging.assert_positive(
                    self._temperature, message="`temperature` must be positive."
                )
            )
        return assertions


def _check_relaxed_arguments(cls, cls_name, temperature, logits, probs):
    """The checks of a relaxed straight-through distribution's arguments."""
    if temperature is None:
        raise TypeError(
            f"{cls_name}: `temperature` is required: a positive floating Tensor "
            "broadcastable to the batch shape; got None."
        )
    validation.check_float_tensor_like(temperature, "temperature")
    validation.check_positive_if_static(temperature, "temperature")
    if (logits is None) == (probs is None):
        raise ValueError(
            f"{cls_name}: pass exactly one of `logits` or `probs`; got "
            f"logits={validation.describe(logits)}, "
            f"probs={validation.describe(probs)}."
        )
    shape_words = (
        "of shape batch_shape + [num_categories]"
        if cls._logits_event_ndims
        else "of shape batch_shape"
    )
    for name, value in (("logits", logits), ("probs", probs)):
        if value is not None:
            validation.check_float_tensor_like(
                value, name, min_rank=cls._logits_event_ndims, expected=shape_words
            )
    if probs is not None:
        validation.check_probabilities_if_static(probs, "probs")


def _relaxed_parameter_properties(cls, dtype, probs_bijector_fn):
    """`ParameterProperties` of both subclasses, which differ in event rank.

    Every subclass defines its own `_parameter_properties` (TFP warns when a
    subclass with a new `__init__` inherits them) and returns these.
    """
    event_ndims = cls._logits_event_ndims

    def temperature_shape_fn(sample_shape):
        # `temperature` has the batch shape, `logits` one event dimension more.
        return sample_shape[:-1] if event_ndims else sample_shape

    return dict(
        temperature=tfp.util.ParameterProperties(
            shape_fn=temperature_shape_fn,
            default_constraining_bijector_fn=(
                lambda: tfb.Softplus(low=construction.machine_epsilon(dtype))
            ),
        ),
        logits=tfp.util.ParameterProperties(event_ndims=event_ndims),
        probs=tfp.util.ParameterProperties(
            event_ndims=event_ndims,
            default_constraining_bijector_fn=probs_bijector_fn,
            is_preferred=False,
        ),
    )


class RelaxedOneHotCategoricalStraightThrough(_RelaxedStraightThrough):
    """Straight-through Gumbel-softmax: one-hot samples, relaxed gradients.

    A sample is drawn from the relaxed one-hot categorical (Concrete /
    Gumbel-softmax) distribution [1, 2] and rounded to the one-hot vector of
    its arg-max; the value is exactly that one-hot vector and the gradient is
    that of the relaxed sample (straight-through [3]):

    ```none
    g_k  ~ Gumbel(0, 1),                  k = 1..K
    y_k  = softmax((logits + g) / temperature)_k            (relaxed sample)
    h    = one_hot(argmax_k y_k)          ~ OneHotCategorical(logits)
    z    = h + y - stop_gradient(y)       (value h, gradient dy/dlogits)
    log_q = log RelaxedOneHotCategorical(temperature, logits).prob(y)
                 (with z, from experimental_sample_and_log_prob)
    log_prob(x)  = the pmf of the hard values, for every x
    ```

    With the same `seed`, `y` is exactly
    `tfd.RelaxedOneHotCategorical(temperature, logits).sample(seed=seed)`.
    The hard values follow `OneHotCategorical(logits)` for every temperature.
    `reparameterization_type` is `FULLY_REPARAMETERIZED`, so the library's
    reparameterization and doubly-reparameterized estimators apply (with the
    bias below).
    """

    _logits_event_ndims = 1
    discrete_family = "RelaxedOneHotCategoricalStraightThrough"

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return _relaxed_parameter_properties(cls, dtype, tfb.SoftmaxCentered)

    def _event_shape(self):
        param = self._logits if self._logits is not None else self._probs
        return validation.static_shape(param)[-1:]

    def _event_shape_tensor(self):
        param = self._logits if self._logits is not None else self._probs
        return ps.shape(param)[-1:]

    def _preimage_distribution(self):
        return tfd.ExpRelaxedOneHotCategorical(
            self._temperature, logits=self._logits, probs=self._probs
        )

    def _soft_from_preimage(self, preimage):
        return tf.exp(preimage)

    def _hard_from_preimage(self, preimage):
        return tf.one_hot(
            tf.argmax(preimage, axis=-1), ps.shape(preimage)[-1], dtype=self.dtype
        )

    def _relaxed_log_prob_of_preimage(self, preimage):
        # log q(y) = log q_exp(log y) - sum_k log y_k  (the Exp change of variables
        # that tfd.RelaxedOneHotCategorical applies), evaluated at log y directly.
        return self._preimage_distribution().log_prob(preimage) - tf.reduce_sum(
            preimage, axis=-1
        )

    def _hard_distribution(self):
        return tfd.OneHotCategorical(
            logits=self._logits, probs=self._probs, dtype=self.dtype
        )

    def _pmf_log_prob(self, x):
        # sum_k x_k log p_k: the OneHotCategorical log-pmf on one-hot x, written
        # so the gradient reaches x (tfd.OneHotCategorical stops it).
        log_probs = tf.math.log_softmax(self._hard_distribution().logits_parameter())
        return tf.reduce_sum(tf.math.multiply_no_nan(log_probs, x), axis=-1)


class RelaxedBernoulliStraightThrough(_RelaxedStraightThrough):
    """Straight-through relaxed Bernoulli: 0/1 samples, relaxed gradients.

    A sample is drawn from the relaxed Bernoulli (binary Concrete)
    distribution [1, 2] and rounded; the value is exactly 0 or 1 and the
    gradient is that of the relaxed sample (straight-through [3]):

    ```none
    u    ~ Logistic(logits / temperature, 1 / temperature)
    y    = sigmoid(u)                     (relaxed sample, in (0, 1))
    h    = 1[u > 0]                       ~ Bernoulli(logits)
    z    = h + y - stop_gradient(y)       (value h, gradient dy/dlogits)
    log_q = log RelaxedBernoulli(temperature, logits).prob(y)
                 (with z, from experimental_sample_and_log_prob)
    log_prob(x)  = the pmf of the hard values, for every x
    ```

    With the same `seed`, `y` is exactly
    `tfd.RelaxedBernoulli(temperature, logits).sample(seed=seed)`. The hard
    values follow `Bernoulli(logits)` for every temperature.
    `reparameterization_type` is `FULLY_REPARAMETERIZED`.
    """

    _logits_event_ndims = 0
    discrete_family = "RelaxedBernoulliStraightThrough"

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return _relaxed_parameter_properties(cls, dtype, tfb.Sigmoid)

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _preimage_distribution(self):
        # Written as tfd.RelaxedBernoulli writes it, so one seed gives the
        # same relaxed sample to the last bit.
        scale = tf.math.reciprocal(tf.convert_to_tensor(self._temperature))
        return tfd.Logistic(self._hard_distribution().logits_parameter() * scale, scale)

    def _soft_from_preimage(self, preimage):
        return tf.sigmoid(preimage)

    def _hard_from_preimage(self, preimage):
        return tf.cast(preimage > 0, self.dtype)

    def _relaxed_log_prob_of_preimage(self, preimage):
        # log q(y) = log p_logistic(u) - log sigmoid'(u), with
        # log sigmoid'(u) = -softplus(-u) - softplus(u); no log(0) as y -> 0, 1.
        return (
            self._preimage_distribution().log_prob(preimage)
            + tf.math.softplus(preimage)
            + tf.math.softplus(-preimage)
        )

    def _hard_distribution(self):
        return tfd.Bernoulli(logits=self._logits, probs=self._probs, dtype=self.dtype)

    def _pmf_log_prob(self, x):
        # tfd.Bernoulli's log-pmf, x log p + (1 - x) log(1 - p), is linear in x
        # and lets the gradient reach x.
        return self._hard_distribution().log_prob(x)


for _cls, _pmf in (
    (RelaxedOneHotCategoricalStraightThrough, "sum_k x_k log p_k"),
    (RelaxedBernoulliStraightThrough, "x log p + (1 - x) log(1 - p)"),
):
    _cls.__doc__ += _PAIRING_DOC.format(pmf=_pmf) + _REFERENCES
del _cls, _pmf
