"""Gumbel-Rao: straight-through Gumbel-softmax, Rao-Blackwellised over the noise.

The straight-through Gumbel-softmax estimator differentiates a relaxed sample
`s(z) = softmax(z / t)` (`sigmoid(z / t)` for a Bernoulli) in place of the
hard value `h = H(z)`, with `z = a + G` (Gumbel or logistic noise `G`). Paulus,
Maddison & Krause [1] replace `d s(z) / d a` by its conditional expectation
given `h`, estimated by `M` relaxations drawn given `h`:

```none
h ~ q(h)                     (one target evaluation per particle)
z_m ~ p(z | h),  m = 1..M    (cheap: no target evaluations)
sample = h + mean_m s(z_m) - stop(mean_m s(z_m)),    d z_m / d a = 1 at fixed noise
```

The loss is then the reparameterization loss `f(L)` at these samples, with
`log q` the discrete pmf at `h` (written linearly in the value, so the
straight-through derivative reaches it too): the straight-through gradient of
the discrete objective `E_q[f(log p(h) - log q(h))]`. The sampler draws the
conditional relaxations and builds the samples (`discrete_sampling.py`); the
per-draw loss is `Reparameterization`'s.

**Bias.** Rao-Blackwellisation conditions on `h`, so it keeps the mean:
`E[Gumbel-Rao_M] = E[straight-through]` for every `M`, which is biased (the
relaxation's derivative stands in for a derivative the discrete objective
does not have; the bias grows with the temperature and with the curvature
of the target between the values). What `M` buys is lower variance, hence
lower mean squared error than plain straight-through at one target
evaluation; `M = 1` is plain straight-through-Gumbel (with the pmf in the
loss). `tests/estimators/test_gumbel_rao.py` measures both.

Serves the relaxed straight-through distributions of
`tfp_vi_estimators.distributions` (`RelaxedBernoulliStraightThrough`,
`RelaxedOneHotCategoricalStraightThrough`; their `temperature` is `t`),
batched, in `tfd.Independent`, or as parts of a `JointDistribution` whose
other parts are reparameterized (those keep their pathwise gradient, taken
through the Rao-Blackwellised samples).

#### References

[1] Max B. Paulus, Chris J. Maddison and Andreas Krause. Rao-Blackwellizing
    the straight-through Gumbel-softmax gradient estimator. ICLR 2021.
    arXiv:2010.04838.
[2] Eric Jang, Shixiang Gu and Ben Poole. Categorical reparameterization with
    Gumbel-softmax. ICLR 2017. arXiv:1611.01144.
"""

from tfp_vi_estimators.estimators.plan import (
    Density,
    DiscreteDraws,
    DiscreteFamily,
    Layout,
    Needs,
    PathGradient,
    SamplingPlan,
)
from tfp_vi_estimators.estimators.reparameterization import Reparameterization

__all__ = ["GumbelRao"]


class GumbelRao(Reparameterization):
    """Straight-through gradients averaged over `M` conditional relaxations.

    Args:
      num_samples: `M >= 1`, relaxations drawn given each hard value.
        Default value: `10`.

    Raises:
      TypeError, ValueError: if `num_samples` is not a positive Python int.
    """

    def __init__(self, num_samples=10):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise TypeError(
                f"`num_samples` must be a positive Python int; got {num_samples!r}."
            )
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be at least 1; got {num_samples}.")
        self.num_samples = num_samples
        self.plan = SamplingPlan(
            needs=Needs.FULL,
            layout=Layout.DRAWS_FIRST,
            path_gradient=PathGradient.LIVE,
            densities=frozenset({Density.SURROGATE}),
            discrete=DiscreteDraws(
                families=frozenset(
                    {
                        DiscreteFamily.STRAIGHT_THROUGH_BERNOULLI,
                        DiscreteFamily.STRAIGHT_THROUGH_ONE_HOT,
                    }
                ),
                straight_through_samples=num_samples,
            ),
        )

    def __repr__(self):
        return f"GumbelRao(num_samples={self.num_samples})"
