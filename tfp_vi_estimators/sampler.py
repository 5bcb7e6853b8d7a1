"""The one place samples are drawn: plan + surrogate + seed -> a frozen `Draw`.

An estimator states what it needs as a `SamplingPlan`; `draw` turns that plan
into samples laid out as the plan says (with their path gradient kept,
stopped, or scalable by the estimator through a port,
`estimators/gradient_scale.py`) and the log-densities the estimator reads. New ways of drawing plug in here.

```none
layout DRAWS_FIRST:       z ~ q, shape [S * K] + batch + event    (tfp.vi's order)
layout PARTICLES_FIRST:   z ~ q, shape [K, S] + batch + event     (tfp.vi's VIMCO)
layout ONE_PER_COMPONENT: z_c ~ q_c for every mixture component,
                          shape [S, C] + batch + event
```

Densities come back arranged `[S, K] + batch` (`[S, C] + batch` per component).

`log q_{stop(phi)}` (`Density.STOPPED_PARAMETERS`) of a bijector-transformed
surrogate is read from the sample's pre-image, which the sampler keeps while
drawing the same samples as `tfp.vi` (`_internal/pre_image.py`: no forward
triangular solve for affine maps, one `log_prob` differentiated in the samples
only for other bijectors), and so is that of a distribution that draws
through a pre-image of its own and offers the hook described there (the
relaxed straight-through distributions); other surrogates, and a stopped
copy the user passed, go through `stopped_surrogate.stopped_log_prob_fn`. With
`sampling=QuasiMonteCarlo()` the base noise is a randomized Sobol' point set
pushed through the surrogate's reparameterization
(`_internal/quasi_monte_carlo.py`). A plan with `discrete` draws (antithetic
groups, relaxations drawn given the values, Rao-Blackwellised straight-through
samples) is drawn by `discrete_sampling.py`.
"""

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

__all__ = ["Draw", "draw", "per_particle"]


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
    """Draws by `plan` from `surrogate`; see the module docstring.

    `sampling` is `None` (iid draws, as `tfp.vi`) or a
    `quasi_monte_carlo.QuasiMonteCarlo` (randomized Sobol' base noise pushed
    through the surrogate's reparameterization; `Layout.DRAWS_FIRST` and
    `Layout.ONE_PER_COMPONENT`, checked by `loss_config`).
    """
    if plan.layout is Layout.ONE_PER_COMPONENT:
        return _draw_from_each_component(
            plan, surrogate, stopped_surrogate, sample_size, seed, sampling
        )
    if plan.discrete is not None:
        return _draw_discrete(
            plan, surrogate, sample_size, importance_sample_size, seed
        )
    if plan.layout is Layout.PARTICLES_FIRST:
        sample_shape = [importance_sample_size, sample_size]
    else:
        sample_shape = [sample_size * importance_sample_size]
    drawn, log_q, non_reparameterized, with_pre_image = _sample_by(
        plan, surrogate, stopped_surrogate, sample_shape, seed, sampling
    )
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
            d.value: per_particle(computed[d](), plan.layout, importance_sample_size)
            for d in _ordered(plan.densities)
        },
        sites=None if plan.sites is None else plan.sites(surrogate, samples),
        scale_port=scale_port,
    )
    spec = tf.TensorSpec(log_q.shape, log_q.dtype)
    return Draw(samples, log_densities, spec, plan.layout, importance_sample_size)


def _sample_by(plan, surrogate, stopped_surrogate, sample_shape, seed, sampling):
    """Samples, `log q`, the non-reparameterized share, and the pre-image kept."""
    if sampling is not None:
        drawn, log_q, with_pre_image = quasi_monte_carlo.sample(
            surrogate, sample_shape[0], seed
        )
        if stopped_surrogate is not None:
            with_pre_image = None  # the user's stopped copy is used as given
        return drawn, log_q, None, with_pre_image
    if _reads_pre_image(plan, surrogate, stopped_surrogate):
        drawn = pre_image.sample_with_pre_image(surrogate, sample_shape, seed)
        return drawn.samples, drawn.log_prob, None, drawn
    return (*_sample(plan, surrogate, sample_shape, seed), None)


def _reads_pre_image(plan, surrogate, stopped_surrogate):
    """Whether `log q_{stop(phi)}` is read from the samples' pre-image."""
    return (
        Density.STOPPED_PARAMETERS in plan.densities
        and plan.path_gradient is not PathGradient.STOPPED
        and plan.needs is Needs.FULL
        and stopped_surrogate is None
        and pre_image.has_pre_image(surrogate)
    )


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


def _draw_discrete(plan, surrogate, sample_size, importance_sample_size, seed):
    """Discrete parts drawn as `plan.discrete` says (`discrete_sampling.py`)."""
    samples, log_q, parts = discrete_sampling.draw(
        plan, surrogate, sample_size, importance_sample_size, seed
    )
    log_densities = LogDensities(
        surrogate=per_particle(log_q, Layout.DRAWS_FIRST, importance_sample_size),
        discrete=parts,
    )
    spec = tf.TensorSpec(log_q.shape, log_q.dtype)
    return Draw(
        samples, log_densities, spec, Layout.DRAWS_FIRST, importance_sample_size
    )


def _draw_from_each_component(
    plan, surrogate, stopped_surrogate, sample_size, seed, sampling=None
):
    """One reparameterized draw per mixture component: `[S, C] + batch + event`
    (with `sampling`, each component's S draws a randomized Sobol' net)."""
    batch_rank = surrogate.batch_shape.rank
    if sampling is not None:
        drawn = quasi_monte_carlo.sample_each_component(surrogate, sample_size, seed)
    else:
        drawn = surrogate.components_distribution.sample([sample_size], seed=seed)
    # [S] + batch + [C] + event -> [S, C] + batch + event
    samples = tf.experimental.numpy.moveaxis(drawn, 1 + batch_rank, 1)
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
        **{d.value: computed[d]() for d in _ordered(plan.densities)}
    )
    spec = tf.TensorSpec(samples.shape[: 2 + batch_rank], samples.dtype)
    return Draw(samples, log_densities, spec, plan.layout, 1)
