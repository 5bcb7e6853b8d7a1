"""What an estimator needs drawn: a frozen sampling plan, and the frozen densities.

An estimator never samples. It states what it needs as a `SamplingPlan`; the
sampler (`tfp_vi_estimators.sampler`) turns plan + surrogate + seed into a
frozen draw, and the estimator reads the `LogDensities` that come back,
arranged `[sample_size, importance_sample_size] + batch_shape` (or
`[sample_size, num_components] + batch_shape` for `Layout.ONE_PER_COMPONENT`).
"""

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

__all__ = [
    "Density",
    "DiscreteDraws",
    "DiscreteFamily",
    "DiscretePart",
    "Layout",
    "LogDensities",
    "Needs",
    "PathGradient",
    "SamplingPlan",
]


class Layout(enum.Enum):
    """How the `S * K` samples are laid out when drawn."""

    DRAWS_FIRST = "draws_first"  # [S * K] + batch + event, as tfp.vi draws
    PARTICLES_FIRST = "particles_first"  # [K, S] + batch + event (tfp.vi's VIMCO)
    ONE_PER_COMPONENT = "one_per_component"  # [S, C] + batch + event, C components


class PathGradient(enum.Enum):
    """Whether samples keep their gradient to the surrogate's parameters."""

    STOPPED = "stopped"  # samples are constants (score-function estimators)
    LIVE = "live"  # samples are differentiable functions of the parameters
    # Live, each particle's backward pass multiplied by a scale the estimator
    # computes from the densities and sends back through
    # `LogDensities.scale_port` (`gradient_scale.py`).
    SCALED = "scaled"
    # Live, and each sample a tensor of its own (an identity of the drawn one)
    # that only the target and the densities read: a training step's gradient
    # with respect to it is the partial derivative, not counting later parts
    # of a joint surrogate drawn from it (the adaptive score weight).
    LEAVES = "leaves"


class Needs(enum.Enum):
    """What the estimator needs of the surrogate's reparameterization."""

    FULL = "full"  # every part fully reparameterized
    PARTIAL = "partial"  # some parts reparameterized, score terms for the rest
    NONE = "none"  # any surrogate: samples are not differentiated


class Density(enum.Enum):
    """The forms of the surrogate's log-density an estimator may read."""

    SURROGATE = "surrogate"
    """`log q_phi(z)` at the samples as drawn (live parameters and samples)."""

    STOPPED_PARAMETERS = "stopped_parameters"
    """`log q_{stop(phi)}(z)`: gradient to the samples only."""

    STOPPED_SAMPLE = "stopped_sample"
    """`log q_phi(stop(z))`: gradient to the parameters only."""

    NON_REPARAMETERIZED = "non_reparameterized"
    """The parts of a joint surrogate that are not reparameterized (live)."""

    COMPONENT_LOG_WEIGHTS = "component_log_weights"
    """`log pi_c` of a mixture, `[1, C] + batch`."""


class DiscreteFamily(enum.Enum):
    """The discrete distributions the discrete-latent estimators read.

    Each may stand alone, inside `tfd.Independent`, or be a part of a
    `JointDistribution`; the value is the class name, for error messages.
    """

    BERNOULLI = "tfd.Bernoulli"
    CATEGORICAL = "tfd.Categorical"
    ONE_HOT_CATEGORICAL = "tfd.OneHotCategorical"
    STRAIGHT_THROUGH_BERNOULLI = "RelaxedBernoulliStraightThrough"
    STRAIGHT_THROUGH_ONE_HOT = "RelaxedOneHotCategoricalStraightThrough"


@dataclasses.dataclass(frozen=True)
class DiscreteDraws:
    """How the sampler draws the discrete parts of a surrogate for an estimator.

    The sampler hands the estimator one `DiscretePart` per discrete part
    (`LogDensities.discrete`); the other parts of a `JointDistribution` keep
    their pathwise gradient.

    Attributes:
      families: the `DiscreteFamily` members the estimator serves.
      group_size: the `sample_size` draws come in groups of this many mutually
        antithetic draws (Dirichlet copula on the uniforms behind each
        Bernoulli value and each stick-breaking level of a categorical one);
        `None`: all `sample_size` draws form one group; `1`: independent.
      relaxations: uniform noise tensors per discrete value, for relaxations
        drawn conditionally on it (`DiscretePart.noise`); `0` for none.
      straight_through_samples: `M > 0`: each straight-through sample carries
        the mean gradient of `M` relaxations drawn conditionally on its value
        (Rao-Blackwellised straight-through); `0` for none.
    """

    families: frozenset
    group_size: int | None = 1
    relaxations: int = 0
    straight_through_samples: int = 0


@dataclasses.dataclass(frozen=True)
class DiscretePart:
    """One discrete part of a draw, in canonical form, `[S, K] + batch + units`.

    Attributes:
      categorical: `False` for Bernoulli values, `True` for categorical ones
        (one-hot, with a last axis of `C` categories).
      logits: the part's logits at the draw (live: gradients reach the
        surrogate's parameters), broadcast to `values`' shape: the log-odds of
        1 for a Bernoulli, unnormalized log-probabilities for a categorical.
      values: the drawn values as floats (stopped): 0/1, or one-hot.
      noise: `[R] + values' shape` uniforms for `R` conditional relaxations
        (`DiscreteDraws.relaxations`), else `None`.
    """

    categorical: bool
    logits: Any
    values: Any
    noise: Any = None


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """What to draw for one loss evaluation.

    Attributes:
      needs: what the surrogate must offer (`Needs`).
      layout: how samples are laid out (`Layout`).
      path_gradient: whether samples keep their pathwise gradient.
      densities: the log-densities the estimator reads.
      min_sample_size: smallest `sample_size` the estimator works with.
      min_importance_sample_size: smallest `importance_sample_size`.
      max_importance_sample_size: largest, or `None` for no limit.
      discrepancy_fn: the only discrepancy the estimator is unbiased for, or
        `None` for every discrepancy.
      discrete: how to draw the discrete parts (`DiscreteDraws`), for the
        discrete-latent estimators; `None` otherwise.
      sites: a function `(surrogate, samples) -> value` the sampler calls on
        a joint surrogate's samples as drawn (`Layout.DRAWS_FIRST`); its value
        reaches the estimator as `LogDensities.sites` (the per-site terms of
        `StructuredScoreFunction`); `None` otherwise.
    """

    needs: Needs
    layout: Layout
    path_gradient: PathGradient
    densities: frozenset
    min_sample_size: int = 1
    min_importance_sample_size: int = 1
    max_importance_sample_size: int | None = None
    discrepancy_fn: Callable | None = None
    discrete: DiscreteDraws | None = None
    sites: Callable | None = None


@dataclasses.dataclass(frozen=True)
class LogDensities:
    """Per-particle log-densities, `[S, K] + batch_shape`; `None` if not requested.

    `surrogate`, `stopped_parameters`, `stopped_sample`,
    `non_reparameterized` and `component_log_weights` are described by the
    `Density` member of the same name.

    Attributes:
      target: `log p(z)` at the samples the target saw.
      discrete: a tuple of `DiscretePart`s, one per discrete part of the
        surrogate, when the plan has `discrete` draws.
      sites: what the plan's `sites` function returned, when it has one.
      scale_port: for `PathGradient.SCALED`, zeros `[S, K] + batch` tied to
        the samples: the gradient the backward pass delivers to it multiplies
        each particle's sample gradient (`gradient_scale.send_scale`).
    """

    target: Any = None
    surrogate: Any = None
    stopped_parameters: Any = None
    stopped_sample: Any = None
    non_reparameterized: Any = None
    component_log_weights: Any = None
    discrete: Any = None
    sites: Any = None
    scale_port: Any = None
