"""Inference Gym targets with known posterior moments, and the surrogate families.

Each target is a model of the Inference Gym (Sountsov, Radul and Vikram 2020),
wrapped as
`gym.targets.VectorModel(model, flatten_sample_transformations=True)`: one
vector of `dim` parameters. The surrogate is fitted in the unconstrained space
`u`, mapped to the model's support by the elementwise bijector `b =
model.default_event_space_bijector`:

```none
log p_u(u) = log p(b(u)) + log |det J_b(u)|
```

and compared, in the constrained space `x = b(u)`, with the model's
`sample_transformations['identity']` ground truth: posterior means and
standard deviations from long NUTS runs (with the standard error of the mean
where gym provides one).

`inference_gym` is an extra of the report (`pip install
'tfp_vi_estimators[report]'`), never a dependency of the loss: it is imported
when a target is loaded, and `load_gym` raises `MissingInferenceGym`, with the
command that installs it, when it is absent.

The surrogate families, all Gaussian in `u` (so their marginals are known in
closed form, see `accuracy_metrics`), with `batch` independent replicates:

- `mean-field`: `Independent(Normal(loc, softplus(s)))`, from `N(0, I)`;
- `full-rank`: `MultivariateNormalTriL(loc, FillScaleTriL(...))`, from
  `N(0, I)`;
- `affine`: TFP's `tfp.experimental.vi.build_affine_surrogate_posterior(...,
  operators='tril')`, a standard normal pushed through a trainable
  lower-triangular affine bijector, with TFP's own random initialization
  (seeded, so every arm starts from the same point).
"""

import dataclasses
import importlib
import typing

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "FAMILIES",
    "TARGET_NAMES",
    "GymTarget",
    "MissingInferenceGym",
    "family_applies",
    "load_gym",
    "load_target",
    "make_surrogate",
]

# The targets of issue 21, roughly fastest first. `load_target` refuses one
# that does not load offline (`GermanCreditNumericLogisticRegression` reads
# its data through `tensorflow_datasets`, a download), and the section
# reports it. `StochasticVolatilitySP500Small` is the sequential (one
# variable per time step) form of `VectorizedStochasticVolatilitySP500Small`'s
# posterior.
TARGET_NAMES = (
    "Banana",
    "EightSchools",
    "NealsFunnel",
    "IllConditionedGaussian",
    "GermanCreditNumericLogisticRegression",
    "BrownianMotionMissingMiddleObservations",
    "BrownianMotionUnknownScalesMissingMiddleObservations",
    "SyntheticLogGaussianCoxProcess",
    "VectorizedStochasticVolatilitySP500Small",
    "SyntheticItemResponseTheory",
    "ConvectionLorenzBridge",
    "ConvectionLorenzBridgeUnknownScales",
    "StochasticVolatilitySP500Small",
)
FAMILIES = ("mean-field", "full-rank", "affine")


class MissingInferenceGym(ImportError):
    """`inference_gym` is not installed; the message says how to install it."""


@dataclasses.dataclass(frozen=True)
class GymTarget:
    """A posterior with known constrained-space moments.

    Attributes:
      name: the gym model's class name (or a test's name).
      dim: number of parameters.
      log_prob_fn: `u -> log p(b(u)) + log |det J_b(u)|`, `[...] + [dim]`
        to `[...]`: the density of the unconstrained parameters.
      bijector: `b`, unconstrained to constrained; elementwise.
      true_mean, true_sd: `[dim]` float64 posterior means and standard
        deviations of the constrained parameters.
      true_mean_se: `[dim]` standard errors of `true_mean`, or None.
    """

    name: str
    dim: int
    log_prob_fn: typing.Callable
    bijector: typing.Any
    true_mean: np.ndarray
    true_sd: np.ndarray
    true_mean_se: np.ndarray | None = None

    def truth_noise(self):
        """Median over parameters of `true_mean_se / true_sd` (None if unknown):
        the smallest standardized mean error the ground truth can resolve."""
        if self.true_mean_se is None:
            return None
        return float(np.median(self.true_mean_se / self.true_sd))


def load_gym():
    """`inference_gym.using_tensorflow`, or `MissingInferenceGym` explaining how
    to install it."""
    try:
        return importlib.import_module("inference_gym.using_tensorflow")
    except ImportError as error:
        raise MissingInferenceGym(
            "The posterior-accuracy benchmark needs the `inference_gym` package "
            "(an extra of the report, not of the library): install it with "
            "`pip install 'tfp_vi_estimators[report]'` or `pip install "
            f"inference_gym`. ({type(error).__name__}: {error})"
        ) from error


def load_target(name):
    """The gym model `name` as a `GymTarget` (loads offline; no download).

    Raises:
      MissingInferenceGym: without `inference_gym`.
      ValueError: for a name that is not a gym target, a model whose
        log-density cannot be computed here (its data must be downloaded), or
        whose event space bijector is not elementwise (the moments of
        `accuracy_metrics` need one).
    """
    gym = load_gym()
    if not hasattr(gym.targets, name):
        raise ValueError(f"`{name}` is not an inference_gym target.")
    model = gym.targets.VectorModel(
        getattr(gym.targets, name)(), flatten_sample_transformations=True
    )
    bijector = model.default_event_space_bijector
    dim = int(model.event_shape[-1])
    _check_elementwise(name, bijector, dim)
    truth = model.sample_transformations["identity"]

    def log_prob_fn(u):
        # Some models compute in float64 (the Cox process); the fit is float32.
        log_prob = tf.cast(model.unnormalized_log_prob(bijector(u)), u.dtype)
        return log_prob + bijector.forward_log_det_jacobian(u, event_ndims=1)

    _check_offline(name, log_prob_fn, dim)

    def as_array(value):
        return None if value is None else np.asarray(value, np.float64)

    return GymTarget(
        name,
        dim,
        log_prob_fn,
        bijector,
        as_array(truth.ground_truth_mean),
        as_array(truth.ground_truth_standard_deviation),
        as_array(truth.ground_truth_mean_standard_error),
    )


def _check_offline(name, log_prob_fn, dim):
    """Raises if the log-density cannot be computed here (data to download)."""
    try:
        log_prob_fn(tf.zeros([1, dim]))
    except Exception as error:  # noqa: BLE001 - any failure: it does not load
        raise ValueError(
            f"`{name}` does not load offline: {type(error).__name__}: {error}"
        ) from error


def _check_elementwise(name, bijector, dim):
    """Raises unless each output coordinate of `bijector` depends on its own
    input only (an exact check: autodiff gives exact zeros off the diagonal)."""
    u = tf.constant(np.linspace(-1.0, 1.0, dim), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(u)
        x = bijector.forward(u)
    jacobian = tape.jacobian(x, u).numpy()
    if np.count_nonzero(jacobian - np.diag(np.diag(jacobian))):
        raise ValueError(
            f"The event space bijector of `{name}` is not elementwise; the "
            "accuracy metrics need one."
        )


def family_applies(family, dim, max_full_rank_dim):
    """Whether `family` is fitted at dimension `dim` (full-rank ones up to
    `max_full_rank_dim`: their `dim^2 / 2` parameters)."""
    return family == "mean-field" or dim <= max_full_rank_dim


def make_surrogate(family, dim, batch, seed):
    """A fresh surrogate of `family`: `batch` replicates of `dim` parameters.

    Args:
      family: one of `FAMILIES`.
      dim: event size.
      batch: number of independent replicates (the batch shape `[batch]`), or
        None for one surrogate without a batch shape.
      seed: seed of the `affine` family's random initial values.

    Returns:
      A `tfd.Distribution` with batch shape `[batch]` (or `[]`), event shape
      `[dim]`, built from new variables.
    """
    batch_shape = [] if batch is None else [batch]
    if family == "mean-field":
        scale = tfp.util.TransformedVariable(
            tf.ones(batch_shape + [dim]), tfb.Softplus(), name="scale"
        )
        loc = tf.Variable(tf.zeros(batch_shape + [dim]), name="loc")
        return tfd.Independent(tfd.Normal(loc, scale), 1)
    if family == "full-rank":
        scale_tril = tfp.util.TransformedVariable(
            tf.eye(dim, batch_shape=batch_shape), tfb.FillScaleTriL(), name="scale_tril"
        )
        return tfd.MultivariateNormalTriL(
            tf.Variable(tf.zeros(batch_shape + [dim]), name="loc"), scale_tril
        )
    if family == "affine":
        return tfp.experimental.vi.build_affine_surrogate_posterior(
            event_shape=[dim], operators="tril", batch_shape=batch_shape, seed=seed
        )
    raise ValueError(f"`family` must be one of {FAMILIES}; got {family!r}.")
