"""StructuredScoreFunction: each discrete site scored by its downstream costs only.

For a model `p(x, z) = prod_j p(z_j | pa_p(z_j))` given as a
`JointDistribution` (pinned to its data) and a surrogate
`q(z) = prod_i q(z_i | pa_q(z_i))` that is a `JointDistribution` over the
model's latent sites, the negative ELBO is a sum of per-site costs,

```none
-ELBO = E_q[ sum_j c_j ],   c_j = log q(z_j | pa_q(z_j)) - log p(z_j | pa_p(z_j))
```

(an observed site has only its model term). The score-function gradient of a
non-reparameterized site `z_i` is `E_q[grad log q(z_i | pa_q) * sum_j c_j]`.
Given its parents, `z_i` is independent of its non-descendants in `q`, so
every cost term `t` that does not depend on `z_i` drops out:

```none
E_q[grad log q(z_i | pa) t(nd)] = E_{pa, nd}[ t(nd) E_{z_i | pa}[grad log q(z_i | pa)] ] = 0
```

The terms that depend on `z_i` are those of `D_i`, `z_i` and its descendants
in the surrogate's graph (their `q` and `p` terms), and the model terms of
the model's children of `D_i` (an observed site included). This estimator
multiplies each score by that downstream cost alone, less a per-site
leave-one-out baseline over the `S` draws (unbiased: it does not depend on
its own draw), as the stochastic computation graphs of [1] and Pyro's
`TraceGraph_ELBO` [2] do:

```none
surrogate = f(L) + sum_i stop(C_i - b_i) log q_phi(z_i | pa_q(z_i)),
C_i = sum_{j in D_i} c_j - sum_{j in ch_p(D_i) \\ D_i} log p(z_j | pa_p(z_j))
```

Reparameterized sites keep their pathwise gradient through `f(L)`, as in
`MixedReparameterization`.

A **plate**: sites whose leading event axis indexes the same `N`
conditionally independent data points (`tfd.Independent` or `tfd.Sample`
sites, e.g. one assignment per data point and the data). The caller declares
it (`plate=`): element `n` of a plated site depends, among plated sites, only
on element `n`. Then the cost of `z_i[n]` keeps only element `n` of the
plated terms reached from it through plated sites; a term reached through a
site outside the plate is kept whole. With one discrete assignment per data
point, each assignment's score meets the cost of its own point instead of the
sum over all `N` points.

The estimator is unbiased for the ELBO only: `discrepancy_fn=kl_reverse`,
`importance_sample_size=1`.

#### References

[1] John Schulman, Nicolas Heess, Theophane Weber and Pieter Abbeel. Gradient
    estimation using stochastic computation graphs. NeurIPS 2015.
    arXiv:1506.05254.
[2] Pyro: `pyro.infer.TraceGraph_ELBO`, https://docs.pyro.ai (Bingham et
    al., Pyro: deep universal probabilistic programming. JMLR 20, 2019).
"""

import dataclasses
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal import joint_sites
from tfp_vi_estimators.estimators.base import GradientEstimator, log_mean_exp
from tfp_vi_estimators.estimators.baselines import LeaveOneOut, NoBaseline
from tfp_vi_estimators.estimators.plan import (
    Density,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)

__all__ = ["StructuredScoreFunction"]

_ELEMENT, _WHOLE = "element", "whole"


@dataclasses.dataclass(frozen=True)
class ScoredSite:
    """One non-reparameterized site of a draw: its score and downstream cost.

    Attributes:
      score: `log q_phi(z_i | pa_q(z_i))`, live, `[S] + batch` (`+ [N]` for
        a plated site).
      cost: its downstream cost `C_i`, stopped, the same shape.
    """

    score: Any
    cost: Any


class StructuredScoreFunction(GradientEstimator):
    """Score function with each site's score times its downstream cost only.

    Use with `target_log_prob_fn=model.unnormalized_log_prob` (or `log_prob`)
    and a `JointDistribution` surrogate over the model's latent sites, named
    as in the model; `discrepancy_fn=kl_reverse`, `importance_sample_size=1`.

    Args:
      model: the model as a `JointDistribution` (Sequential, Named, their
        auto-batched forms, or Coroutine: its graph is read from the traced
        parameters of each site), usually pinned to its data with
        `experimental_pin`. Its per-site terms give the downstream costs; the
        loss's value and the pathwise gradient come from the target.
      plate: names of sites (latent or observed) whose leading event axis
        indexes the same conditionally independent data points (see the
        module docstring); `()` for none. Default value: `()`.
      baseline: `'leave_one_out'` (per site and plate element, over the
        `sample_size` draws; needs `sample_size >= 2`) or `None`.
        Default value: `'leave_one_out'`.

    Raises:
      TypeError: if `model` is not a `JointDistribution` or `plate` not a
        sequence of site names.
      ValueError: if a `plate` name is not a site of `model`, or `baseline`
        is not one of the above.
    """

    def __init__(self, model, plate=(), baseline="leave_one_out"):
        self.model = _check_model(model)
        self.plate = _check_plate(plate, self.model)
        self.baseline = _check_baseline(baseline)
        joint, self._pins = joint_sites.unpinned(self.model)
        self._joint = joint
        self._model_parents = joint_sites.parents(joint)
        self.plan = SamplingPlan(
            needs=Needs.NONE,
            layout=Layout.DRAWS_FIRST,
            path_gradient=PathGradient.LIVE,
            densities=frozenset({Density.SURROGATE}),
            min_sample_size=self.baseline.min_sample_size,
            max_importance_sample_size=1,
            discrepancy_fn=tfp.vi.kl_reverse,
            sites=self.scored_sites,
        )

    @property
    def latent_sites(self):
        """The model's sites that are not pinned, in the model's order."""
        return [n for n in joint_sites.site_names(self._joint) if n not in self._pins]

    def check_surrogate(self, surrogate):
        """Raises unless `surrogate` is a joint over the model's latent sites.

        Raises:
          TypeError: if `surrogate` is not a `JointDistribution`.
          ValueError: if its sites differ from the model's latent sites.
        """
        if not isinstance(surrogate, tfp.distributions.JointDistribution):
            raise TypeError(
                f"{self.name} needs a JointDistribution `surrogate_posterior` "
                "over the model's latent sites; got "
                f"{type(surrogate).__name__}."
            )
        names, latent = joint_sites.site_names(surrogate), self.latent_sites
        if sorted(names) != sorted(latent):
            raise ValueError(
                f"{self.name}: the sites of `surrogate_posterior` {names} must "
                f"be the model's latent (unpinned) sites {latent}; name the "
                "surrogate's parts as the model's."
            )

    def scored_sites(self, surrogate, samples):
        """The `ScoredSite` of each non-reparameterized site (the plan's hook).

        Args:
          surrogate: the `JointDistribution` surrogate.
          samples: its samples as drawn, `[S] + batch + event` per site.

        Returns:
          A tuple of `ScoredSite`s, one per non-reparameterized site.
        """
        self.check_surrogate(surrogate)
        names = joint_sites.site_names(surrogate)
        values = dict(zip(names, _flat(surrogate, samples), strict=True))
        q_terms = self._terms(surrogate, values)
        p_terms = self._terms(self._joint, {**values, **self._pins})
        _check_plate_sizes(q_terms, p_terms)
        graph = _Graph(
            joint_sites.parents(surrogate), self._model_parents, set(self.plate)
        )
        return tuple(
            ScoredSite(q_terms[name][0], _cost(graph, name, names, q_terms, p_terms))
            for name, kind in zip(
                names, _flat(surrogate, surrogate.reparameterization_type), strict=True
            )
            if kind != tfp.distributions.FULLY_REPARAMETERIZED
        )

    def _terms(self, joint, values):
        """`{site: (terms, plated)}`; a plated site keeps its leading event axis."""
        terms = {}
        for name, dist in joint_sites.site_distributions(joint, values).items():
            if name in self.plate:
                value, plated = joint_sites.site_terms(dist, values[name])
                if not plated:
                    raise ValueError(
                        f"{self.name}: `plate` site {name!r} must be a "
                        "tfd.Independent or tfd.Sample whose leading event axis "
                        f"indexes the data points; got {type(dist).__name__}."
                    )
                terms[name] = (value, True)
            else:
                terms[name] = (dist.log_prob(values[name]), False)
        return terms

    def per_draw_loss(self, log_densities, discrepancy_fn):
        f = discrepancy_fn(log_mean_exp(log_densities.target - log_densities.surrogate))
        terms = [f]
        for site in log_densities.sites:
            signal = tf.stop_gradient(site.cost - self.baseline(site.cost))
            term = signal * site.score
            if site.score.shape.rank > f.shape.rank:
                term = tf.reduce_sum(term, axis=-1)  # the plate's elements
            terms.append(term - tf.stop_gradient(term))
        return tf.add_n(terms)

    def __repr__(self):
        return (
            f"StructuredScoreFunction(plate={self.plate!r}, baseline={self.baseline!r})"
        )


@dataclasses.dataclass(frozen=True)
class _Graph:
    """The surrogate's and the model's parents, and the plated sites."""

    q_parents: dict
    p_parents: dict
    plate: set

    def mode(self, parent_mode, child):
        """How a child sees a parent it depends on: element-wise or whole."""
        if parent_mode == _ELEMENT and child in self.plate:
            return _ELEMENT
        return _WHOLE


def _merge(modes, site, mode):
    """Records `mode` for `site`; whole dominates element-wise."""
    if modes.get(site) != _WHOLE:
        modes[site] = mode


def _downstream(graph, site, order):
    """`(q_modes, p_modes)`: the sites whose `q` and `p` terms depend on `site`.

    `order` is the surrogate's site order (topological in its graph).
    """
    q_modes = {site: _ELEMENT if site in graph.plate else _WHOLE}
    for name in order[order.index(site) + 1 :]:
        for parent in graph.q_parents[name]:
            if parent in q_modes:
                _merge(q_modes, name, graph.mode(q_modes[parent], name))
    p_modes = dict(q_modes)
    for name, parents in graph.p_parents.items():
        for parent in parents:
            if parent in q_modes:
                _merge(p_modes, name, graph.mode(q_modes[parent], name))
    return q_modes, p_modes


def _cost(graph, site, order, q_terms, p_terms):
    """`C_i`: the stopped downstream cost of `site`, in its score's shape."""
    q_modes, p_modes = _downstream(graph, site, order)
    parts = [_select(q_terms[n], m) for n, m in q_modes.items()]
    parts += [-_select(p_terms[n], m) for n, m in p_modes.items()]
    score = q_terms[site][0]
    parts = [p if p.shape.rank == score.shape.rank else p[..., None] for p in parts]
    return tf.stop_gradient(tf.broadcast_to(tf.add_n(parts), tf.shape(score)))


def _check_plate_sizes(*terms):
    """Raises unless every plated site has the same (static) number of elements."""
    sizes = {
        name: tf.compat.dimension_value(value.shape[-1])
        for site_terms in terms
        for name, (value, plated) in site_terms.items()
        if plated
    }
    if len({n for n in sizes.values() if n is not None}) > 1:
        raise ValueError(
            "The `plate` sites must share the length of their leading event "
            f"axis (one element per data point); got {sizes}."
        )


def _select(terms, mode):
    """A site's terms as one site downstream sees them."""
    value, plated = terms
    value = tf.stop_gradient(value)
    if plated and mode == _WHOLE:
        return tf.reduce_sum(value, axis=-1)
    return value


def _flat(joint, structure):
    return list(joint._model_flatten(structure))  # noqa: SLF001 - TFP's order


def _check_model(model):
    if not joint_sites.is_model(model):
        raise TypeError(
            "`model` must be a tfd.JointDistribution (or one pinned to data "
            f"with `experimental_pin`); got {type(model).__name__}. A target "
            "given only as a function has no sites: use ScoreFunction."
        )
    return model


def _check_plate(plate, model):
    if isinstance(plate, str) or not all(isinstance(n, str) for n in plate):
        raise TypeError(f"`plate` must be a sequence of site names; got {plate!r}.")
    names = joint_sites.site_names(joint_sites.unpinned(model)[0])
    unknown = [n for n in plate if n not in names]
    if unknown:
        raise ValueError(
            f"`plate` names {unknown}, which are not sites of `model` {names}."
        )
    return tuple(plate)


def _check_baseline(baseline):
    if baseline == "leave_one_out":
        return LeaveOneOut()
    if baseline is None:
        return NoBaseline()
    raise ValueError(
        "`baseline` must be 'leave_one_out' or None (a baseline per site and "
        f"plate element); got {baseline!r}."
    )
