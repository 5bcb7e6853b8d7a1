"""The private TFP names the package relies on are still where it imports them.

`tfp_vi_estimators._internal.tfp_internals` gathers every import from TFP's
private modules. When a TFP release moves or removes one of them, the test
for that name fails with a message naming it and the installed TFP version,
instead of an `ImportError` somewhere in the package.
"""

import importlib

import pytest
import tensorflow as tf
import tensorflow_probability as tfp

TENSOR_UTIL = "tensorflow_probability.python.internal.tensor_util"
PREFER_STATIC = "tensorflow_probability.python.internal.prefer_static"
SAMPLERS = "tensorflow_probability.python.internal.samplers"
NEST_UTIL = "tensorflow_probability.python.internal.nest_util"
TRANSFORMED = "tensorflow_probability.python.distributions.transformed_distribution"
LOOP_UTIL = "tensorflow_probability.python.internal.loop_util"

# (module path, attribute): every private TFP name the package uses, directly
# or through a module that `tfp_internals` re-exports.
PRIVATE_SYMBOLS = [
    (TENSOR_UTIL, "convert_nonref_to_tensor"),
    (TENSOR_UTIL, "is_ref"),
    (PREFER_STATIC, "concat"),
    (PREFER_STATIC, "shape"),
    (SAMPLERS, "fold_in"),
    (SAMPLERS, "sanitize_seed"),
    (SAMPLERS, "split_seed"),
    (NEST_UTIL, "call_fn"),
    (TRANSFORMED, "_TransformedDistribution"),
    (LOOP_UTIL, "trace_scan"),
]

# Name exported by `tfp_internals` -> (module path, attribute) it stands for;
# a re-exported module stands for the module itself (attribute None).
EXPORTS = {
    "call_with_structure": (NEST_UTIL, "call_fn"),
    "convert_nonref_to_tensor": (TENSOR_UTIL, "convert_nonref_to_tensor"),
    "has_reference_semantics": (TENSOR_UTIL, "is_ref"),
    "prefer_static": (PREFER_STATIC, None),
    "fold_in_seed": (SAMPLERS, "fold_in"),
    "samplers": (SAMPLERS, None),
    "TransformedDistributionBase": (TRANSFORMED, "_TransformedDistribution"),
    "trace_scan": (LOOP_UTIL, "trace_scan"),
}


def _resolve(module_path, attribute):
    """The object at `module_path.attribute`, or a failure naming it."""
    where = f"{module_path}.{attribute}" if attribute else module_path
    version = f"tensorflow_probability {tfp.__version__}"
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        pytest.fail(f"TFP private module `{module_path}` is gone in {version}: {err}")
    if attribute is None:
        return module
    if not hasattr(module, attribute):
        pytest.fail(
            f"TFP private symbol `{where}` is gone in {version}; update "
            "tfp_vi_estimators/_internal/tfp_internals.py (or use a public API)."
        )
    return getattr(module, attribute)


def _tfp_internals():
    # Imported here, not at the top: when a symbol moves, this module must
    # still import so that the tests below name the symbol.
    return importlib.import_module("tfp_vi_estimators._internal.tfp_internals")


@pytest.mark.parametrize(
    ("module_path", "attribute"),
    PRIVATE_SYMBOLS,
    ids=[f"{m.rsplit('.', 1)[-1]}.{a}" for m, a in PRIVATE_SYMBOLS],
)
def test_private_symbol_is_still_there(module_path, attribute):
    assert callable(_resolve(module_path, attribute)), (
        f"`{module_path}.{attribute}` is no longer callable in "
        f"tensorflow_probability {tfp.__version__}."
    )


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_is_the_tfp_object(name):
    assert getattr(_tfp_internals(), name) is _resolve(*EXPORTS[name]), name


def test_every_export_is_listed():
    # A new private import must come with its entry here, so that it is checked.
    assert sorted(_tfp_internals().__all__) == sorted(EXPORTS)


def test_public_seed_functions_are_the_private_ones():
    # tfp_internals re-exports `samplers` for `fold_in` only; its docstring tells
    # callers to use these public names for the rest.
    samplers = _tfp_internals().samplers
    assert tfp.random.sanitize_seed is samplers.sanitize_seed
    assert tfp.random.split_seed is samplers.split_seed


def test_behaviour_the_package_relies_on():
    tfp_internals = _tfp_internals()
    variable = tf.Variable([1.0, 2.0])
    constant = tf.constant([1.0, 2.0])
    # Variables are kept by reference (so gradients reach them), tensors as is.
    assert tfp_internals.convert_nonref_to_tensor(variable) is variable
    assert tfp_internals.has_reference_semantics(variable)
    assert not tfp_internals.has_reference_semantics(constant)
    assert tfp_internals.has_reference_semantics(
        tfp.util.TransformedVariable(1.0, tfp.bijectors.Softplus())
    )
    # Static shapes stay NumPy: no ops built.
    ps = tfp_internals.prefer_static
    assert not tf.is_tensor(ps.concat([ps.shape(constant), [3]], axis=0))
    seed = tfp_internals.fold_in_seed(tf.constant([1, 2]), tf.constant(3))
    assert seed.shape == [2] and seed.dtype == tf.int32
