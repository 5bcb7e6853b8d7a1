"""The one place samples are drawn: plan + surrogate + seed -> a frozen `Draw`.

An estimator states what it needs as a `SamplingPlan`; the sampler turns that
plan into samples laid out as the plan says (with their path gradient kept,
stopped, or scalable by the estimator through a port,
`estimators/gradient_scale.py`) and the log-densities the estimator reads.

```none
layout DRAWS_FIRST:       z ~ q, shape [S * K] + batch + event    (tfp.vi's order)
layout PARTICLES_FIRST:   z ~ q, shape [K, S] + batch + event     (tfp.vi's VIMCO)
layout ONE_PER_COMPONENT: z_c ~ q_c for every mixture component,
                          shape [S, C] + batch + event
```

Densities come back arranged `[S, K] + batch` (`[S, C] + batch` per component).

How to draw is decided once, when the loss's options are checked
(`route_for`, kept in `loss_config.LossOptions.route`), from the plan and the
surrogate's structure; each evaluation then follows its `Route`:

```none
IidRoute             iid draws as tfp.vi makes them; log q_{stop(phi)} from a
                     stopped copy (stopped_surrogate.stopped_log_prob_fn)
PreImageRoute        tfp.vi's samples, drawn keeping their pre-image, from
                     which log q_{stop(phi)} is read (_internal/pre_image.py:
                     no forward triangular solve for affine maps, one log_prob
                     differentiated in the samples only for other bijectors;
                     also distributions that offer a pre-image hook, the
                     relaxed straight-through distributions)
QuasiMonteCarloRoute randomized Sobol' base noise pushed through the
                     surrogate's reparameterization (_internal/quasi_monte_carlo.py)
DiscreteRoute        antithetic groups, relaxations drawn given the values,
                     Rao-Blackwellised straight-through samples
                     (discrete_sampling.py)
EachComponentRoute   one draw per mixture component (iid or randomized QMC)
```

A stopped copy the user passes is used as given on every route. New ways of
drawing plug in here, as a new `Route`.
"""

import abc
import dataclasses
from typing import Any

import tensorflow as tf

from tfp_vi_estimators import discrete_sampling
from tfp_vi_estimators._internal import pre_image, quasi_monte_carlo
from tfp_vi_estimators._internal.reparameterization import reparameterized_parts
from tfp_vi_estimators.estimators import gradient_scale
from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    LogDensities,
    Needs,
    PathGradient,
    SamplingPlan,
)
from tfp_vi_estimators.stopped_surrogate import stopped_log_prob_fn

__all__ = [
    "DiscreteRoute",
    "Draw",
    "EachComponentRoute",
    "IidRoute",
    "PreImageRoute",
    "QuasiMonteCarloRoute",
    "Route",
    "draw",
    "per_particle",
    "route_for",
]


@dataclasses.dataclass(frozen=True)
class Draw:
    """The samples of one loss evaluation and their log-densities.

    Attributes:
      samples: the (possibly nested) samples, laid out as the plan says; the
        target is evaluated at these.
      log_densities: the `LogDensities` the plan asked for (`target` unset).
      log_prob_spec: the shape and dtype the target must return for `samples`.
      layout: the plan's `Layout`.
      importance_sample_size: K, to arrange the target's output.
    """

    samples: Any
    log_densities: LogDensities
    log_prob_spec: tf.TensorSpec
    layout: Layout
    importance_sample_size: int

    def with_target(self, target_log_prob):
        """The log-densities with the target's, arranged `[S, K] + batch`."""
        arranged = per_particle(
            target_log_prob, self.layout, self.importance_sample_size
        )
        return dataclasses.replace(self.log_densities, target=arranged)


def per_particle(log_prob, layout, importance_sample_size):
    """A log-density in the samples' layout, as `[S, K] + batch`."""
    if layout is Layout.PARTICLES_FIRST:  # [K, S] + batch
        perm = tf.concat([[1, 0], tf.range(2, tf.rank(log_prob))], axis=0)
        return tf.transpose(log_prob, perm)
    if layout is Layout.DRAWS_FIRST:  # [S * K] + batch
        shape = tf.concat(
            [[-1, importance_sample_size], tf.shape(log_prob)[1:]], axis=0
        )
        return tf.reshape(log_prob, shape)
    return log_prob  # one per component: already [S, C] + batch


def draw(
    plan: SamplingPlan,
    surrogate,
    stopped_surrogate,
    sample_size,
    importance_sample_size,
    seed,
    sampling=None,
) -> Draw:
    """Draws by `plan` from `surrogate`: `route_for(...).draw(...)`.

    For one draw; a loss evaluated many times decides its route once
    (`loss_config.check_options`) and calls `Route.draw`.
    """
    route = route_for(plan, surrogate, sampling)
    return route.draw(
        surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
    )


def route_for(plan: SamplingPlan, surrogate, sampling=None) -> "Route":
    """The `Route` that draws by `plan` from surrogates built as `surrogate`.

    Decided from the plan and the surrogate's structure (its family, its
    bijectors, its static shapes), never its parameter values, so the route of
    the first surrogate serves every surrogate rebuilt the same way (a fit's
    steps, a Keras model's batches).

    `sampling` is `None` (iid draws, as `tfp.vi`) or a
    `quasi_monte_carlo.QuasiMonteCarlo` (randomized Sobol' base noise pushed
    through the surrogate's reparameterization; `Layout.DRAWS_FIRST` and
    `Layout.ONE_PER_COMPONENT` with `Needs.FULL`, checked by `loss_config`).
    """
    if plan.layout is Layout.ONE_PER_COMPONENT:
        return EachComponentRoute(plan, quasi_monte_carlo=sampling is not None)
    if plan.discrete is not None:
        return DiscreteRoute(plan)
    if sampling is not None:
        return QuasiMonteCarloRoute(plan)
    if _reads_pre_image(plan, surrogate):
        return PreImageRoute(plan)
    return IidRoute(plan)


def _reads_pre_image(plan, surrogate):
    """Whether `log q_{stop(phi)}` can be read from the samples' pre-image."""
    return (
        Density.STOPPED_PARAMETERS in plan.densities
        and plan.path_gradient is not PathGradient.STOPPED
        and plan.needs is Needs.FULL
        and pre_image.has_pre_image(surrogate)
    )


@dataclasses.dataclass(frozen=True)
class Route(abc.ABC):
    """How the samples of one `plan` are drawn; chosen once by `route_for`.

    Attributes:
      plan: the estimator's `SamplingPlan`.
    """

    plan: SamplingPlan

    @abc.abstractmethod
    def draw(
        self, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
    ) -> Draw:
        """The `Draw` of `sample_size` x `importance_sample_size` samples.

        `stopped_surrogate` is the user's stopped copy of `surrogate`, or
        `None` (the route then reads `log q_{stop(phi)}` from the pre-image, or
        builds a stopped copy: `stopped_surrogate.stopped_log_prob_fn`).
        """


@dataclasses.dataclass(frozen=True)
class _ContinuousRoute(Route):
    """Layouts `DRAWS_FIRST` and `PARTICLES_FIRST`; subclasses say how the
    samples and their `log q` are drawn (`_sample`)."""

    def draw(
        self, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
    ) -> Draw:
        plan = self.plan
        if plan.layout is Layout.PARTICLES_FIRST:
            sample_shape = [importance_sample_size, sample_size]
        else:
            sample_shape = [sample_size * importance_sample_size]
        drawn, log_q, non_reparameterized, with_pre_image = self._sample(
            surrogate, sample_shape, seed
        )
        if stopped_surrogate is not None:
            with_pre_image = None  # the user's stopped copy is used as given
        samples, with_pre_image, scale_port = _keep_path_gradient(
            plan,
            drawn,
            with_pre_image,
            lambda: _port_spec(log_q, sample_size, importance_sample_size),
        )
        computed = {
            Density.SURROGATE: lambda: log_q,
            Density.STOPPED_PARAMETERS: lambda: _stopped_parameters(
                surrogate, stopped_surrogate, with_pre_image, samples
            ),
            Density.STOPPED_SAMPLE: lambda: surrogate.log_prob(
                tf.nest.map_structure(tf.stop_gradient, drawn)
            ),
            Density.NON_REPARAMETERIZED: lambda: non_reparameterized,
        }
        log_densities = LogDensities(
            **{
                d.value: per_particle(
                    computed[d](), plan.layout, importance_sample_size
                )
                for d in _ordered(plan.densities)
            },
            sites=None if plan.sites is None else plan.sites(surrogate, samples),
            scale_port=scale_port,
        )
        spec = tf.TensorSpec(log_q.shape, log_q.dtype)
        return Draw(samples, log_densities, spec, plan.layout, importance_sample_size)

    @abc.abstractmethod
    def _sample(self, surrogate, sample_shape, seed):
        """`(samples, log q, non-reparameterized share or None, pre-image or None)`."""


@dataclasses.dataclass(frozen=True)
class IidRoute(_ContinuousRoute):
    """Independent draws as `tfp.vi` makes them; a stopped copy's `log_prob`
    for `log q_{stop(phi)}`."""

    def _sample(self, surrogate, sample_shape, seed):
        return (*_sample(self.plan, surrogate, sample_shape, seed), None)


@dataclasses.dataclass(frozen=True)
class PreImageRoute(_ContinuousRoute):
    """`tfp.vi`'s samples, drawn keeping their pre-image, from which
    `log q_{stop(phi)}` is read (`_internal/pre_image.py`)."""

    def _sample(self, surrogate, sample_shape, seed):
        drawn = pre_image.sample_with_pre_image(surrogate, sample_shape, seed)
        return drawn.samples, drawn.log_prob, None, drawn


@dataclasses.dataclass(frozen=True)
class QuasiMonteCarloRoute(_ContinuousRoute):
    """Randomized Sobol' base noise pushed through the surrogate's
    reparameterization (`_internal/quasi_monte_carlo.py`), keeping the
    pre-image where the surrogate has one."""

    def _sample(self, surrogate, sample_shape, seed):
        drawn, log_q, with_pre_image = quasi_monte_carlo.sample(
            surrogate, sample_shape[0], seed
        )
        return drawn, log_q, None, with_pre_image


@dataclasses.dataclass(frozen=True)
class DiscreteRoute(Route):
    """Discrete parts drawn as `plan.discrete` says (`discrete_sampling.py`):
    antithetic groups, relaxations given the values, straight-through samples."""

    def draw(
        self, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
    ) -> Draw:
        del stopped_surrogate  # the discrete estimators read no stopped density
        samples, log_q, parts = discrete_sampling.draw(
            self.plan, surrogate, sample_size, importance_sample_size, seed
        )
        log_densities = LogDensities(
            surrogate=per_particle(log_q, Layout.DRAWS_FIRST, importance_sample_size),
            discrete=parts,
        )
        spec = tf.TensorSpec(log_q.shape, log_q.dtype)
        return Draw(
            samples, log_densities, spec, Layout.DRAWS_FIRST, importance_sample_size
        )


@dataclasses.dataclass(frozen=True)
class EachComponentRoute(Route):
    """One reparameterized draw per mixture component: `[S, C] + batch + event`
    (`quasi_monte_carlo`: each component's S draws a randomized Sobol' net).

    Attributes:
      quasi_monte_carlo: draw the components' base noise by randomized QMC.
    """

    quasi_monte_carlo: bool = False

    def draw(
        self, surrogate, stopped_surrogate, sample_size, importance_sample_size, seed
    ) -> Draw:
        del importance_sample_size  # one particle per component (checked)
        samples = self._components_sample(surrogate, sample_size, seed)
        log_pi = tf.math.log_softmax(
            surrogate.mixture_distribution.logits_parameter(), axis=-1
        )  # batch + [C]
        computed = {
            Density.STOPPED_PARAMETERS: lambda: stopped_log_prob_fn(
                surrogate, stopped_surrogate
            )(samples),
            Density.COMPONENT_LOG_WEIGHTS: lambda: tf.expand_dims(
                tf.experimental.numpy.moveaxis(log_pi, -1, 0), 0
            ),
        }
        log_densities = LogDensities(
            **{d.value: computed[d]() for d in _ordered(self.plan.densities)}
        )
        batch_rank = surrogate.batch_shape.rank
        spec = tf.TensorSpec(samples.shape[: 2 + batch_rank], samples.dtype)
        return Draw(samples, log_densities, spec, self.plan.layout, 1)

    def _components_sample(self, surrogate, sample_size, seed):
        """`[S, C] + batch + event`: S draws of every component."""
        if self.quasi_monte_carlo:
            drawn = quasi_monte_carlo.sample_each_component(
                surrogate, sample_size, seed
            )
        else:
            drawn = surrogate.components_distribution.sample([sample_size], seed=seed)
        # [S] + batch + [C] + event -> [S, C] + batch + event
        return tf.experimental.numpy.moveaxis(drawn, 1 + surrogate.batch_shape.rank, 1)


def _stopped_parameters(surrogate, stopped_surrogate, with_pre_image, samples):
    """`log q_{stop(phi)}(samples)`: from the pre-image when the sampler kept it
    (`_internal/pre_image.py`), else from a stopped copy's `log_prob`."""
    if with_pre_image is not None:
        return pre_image.stopped_log_prob_from_pre_image(
            with_pre_image, samples, stopped_log_prob_fn
        )
    return stopped_log_prob_fn(surrogate, stopped_surrogate)(samples)


def _ordered(densities):
    return sorted(densities, key=lambda d: list(Density).index(d))


def _sample(plan, surrogate, sample_shape, seed):
    """Samples, `log q` at them, and the non-reparameterized parts' share."""
    if plan.needs is Needs.PARTIAL:
        # One pass over the parts gives both the density and its discrete share.
        drawn = surrogate.sample(sample_shape, seed=seed)
        return (drawn, *_split_log_prob(surrogate, drawn))
    if plan.path_gradient is not PathGradient.STOPPED:
        # As tfp.vi: the density comes with the sample (no bijector inverses).
        drawn, log_q = surrogate.experimental_sample_and_log_prob(
            sample_shape, seed=seed
        )
        return drawn, log_q, None
    drawn = tf.nest.map_structure(
        tf.stop_gradient, surrogate.sample(sample_shape, seed=seed)
    )
    return drawn, surrogate.log_prob(drawn), None


def _split_log_prob(surrogate, samples):
    """A JointDistribution's log-density, and the share of its parts that are
    not reparameterized (live parameters and parents)."""
    parts = tf.nest.flatten(surrogate.log_prob_parts(samples))
    discrete = [
        part
        for part, reparameterized in zip(
            parts, reparameterized_parts(surrogate), strict=True
        )
        if not reparameterized
    ]
    return tf.add_n(parts), tf.add_n(discrete) if discrete else tf.zeros_like(parts[0])


def _port_spec(log_q, sample_size, importance_sample_size):
    """The shape `[S, K] + batch` and dtype of a scale port, from `log_q`."""
    shape = [[sample_size, importance_sample_size], tf.shape(log_q)[1:]]
    return tf.concat(shape, axis=0), log_q.dtype


def _keep_path_gradient(plan, drawn, with_pre_image, port_spec):
    """The samples as the target sees them, the pre-image kept, and the scale
    port if any (`PathGradient.SCALED`: every sample tensor's ports summed, so
    the multiplier the estimator sends reaches each of them)."""
    if plan.path_gradient is PathGradient.LEAVES:
        return tf.nest.map_structure(tf.identity, drawn), with_pre_image, None
    if plan.path_gradient is not PathGradient.SCALED:
        return drawn, with_pre_image, None
    ports = []
    port_shape, port_dtype = port_spec()

    def scalable(x):
        y, port = gradient_scale.scalable(x, port_shape, port_dtype)
        ports.append(port)
        return y

    samples = tf.nest.map_structure(scalable, drawn)
    # A pre-image the stopped density is differentiated through (a relaxed
    # straight-through sample's) is scaled the same way.
    with_pre_image = pre_image.with_path_transform(with_pre_image, scalable)
    return samples, with_pre_image, tf.add_n(ports)
