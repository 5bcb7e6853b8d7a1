"""Every name the package takes from TFP's private modules, in one place.

TFP documents `tfp.bijectors`, `tfp.distributions`, `tfp.util` and
`tfp.random`; its `tensorflow_probability.python.internal` modules may move
or change in any release. The package uses the public API wherever one exists
(`tfp.bijectors.Softplus`, `tfp.bijectors.FillScaleTriL`,
`tfp.util.ParameterProperties`, `tfp.random.sanitize_seed`,
`tfp.random.split_seed`, ...) and imports from here only what has no public
equivalent. `tests/_internal/test_tfp_internals.py` imports each of these
names straight from TFP and names the one that moved, with the TFP version,
when a release breaks it.

What remains, and why:

* `convert_nonref_to_tensor` (`internal.tensor_util`): converts a distribution
  parameter to a tensor but keeps a `tf.Variable` or a
  `tfp.util.TransformedVariable` / `DeferredTensor` by reference, as every TFP
  distribution does, so that gradients reach the variable and a variable's
  later value is read at each use. `tf.convert_to_tensor` would read the
  value once.
* `has_reference_semantics` (`internal.tensor_util.is_ref`): whether a
  parameter is such a reference (a variable, or a `tf.Module` with a dtype
  and shape), to run value checks at construction for constants but at every
  use for variables, as `_parameter_control_dependencies` expects.
* `prefer_static` (`internal.prefer_static`, used as `ps.concat`,
  `ps.shape`): shape arithmetic that stays in NumPy when the shapes are
  static and builds ops only when they are not. TFP calls the `shape_fn` of
  `ParameterProperties` with either kind; `tf.concat` / `tf.shape` would
  always build a tensor and lose the static shape.
* `samplers` (`internal.samplers`) and `fold_in_seed` (`samplers.fold_in`):
  `fold_in` derives one stateless seed per replica from a seed and an
  integer, in TFP's seed format; `tfp.random` exposes `sanitize_seed` and
  `split_seed` (the same functions as `samplers.sanitize_seed` /
  `samplers.split_seed`; prefer the public names) but not `fold_in`.
* `call_with_structure` (`internal.nest_util.call_fn`): calls the user's
  target with a sample structure exactly as `tfp.vi` does (a list or tuple
  spread as positional arguments, a dict as keywords, a namedtuple as one
  argument except `JointDistributionCoroutine`'s `StructTuple`, which is
  spread). Reimplementing the rule would drift from TFP's.
* `TransformedDistributionBase` (`distributions.transformed_distribution.
  _TransformedDistribution`): the class that holds TFP's generic
  transformed-distribution sampling. `tfd.TransformedDistribution(...)` returns
  an instance of it, not of the public class, when the bijector is not a
  composite tensor (a masked autoregressive flow); the pre-image sampler
  (`pre_image.py`) checks against it that a surrogate samples by that generic
  method.
* `trace_scan` (`internal.loop_util.trace_scan`): the scan with a trace that
  `tfp.math.minimize_stateless` runs its steps in; the stateless fit runs the
  same loop (`fitting/stateless_loop.py`) so that its trace is `tfp.vi`'s
  for the same seed.
"""

from tensorflow_probability.python.distributions.transformed_distribution import (
    _TransformedDistribution as TransformedDistributionBase,
)
from tensorflow_probability.python.internal import prefer_static, samplers
from tensorflow_probability.python.internal.loop_util import trace_scan
from tensorflow_probability.python.internal.nest_util import (
    call_fn as call_with_structure,
)
from tensorflow_probability.python.internal.samplers import fold_in as fold_in_seed
from tensorflow_probability.python.internal.tensor_util import (
    convert_nonref_to_tensor,
)
from tensorflow_probability.python.internal.tensor_util import (
    is_ref as has_reference_semantics,
)

__all__ = [
    "TransformedDistributionBase",
    "call_with_structure",
    "convert_nonref_to_tensor",
    "fold_in_seed",
    "has_reference_semantics",
    "prefer_static",
    "samplers",
    "trace_scan",
]
