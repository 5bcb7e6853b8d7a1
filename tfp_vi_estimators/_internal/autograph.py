"""The package's code is not converted by autograph, as TFP's and Keras' is not.

Inside a `tf.function` (autograph on, the default), autograph rewrites every
Python function it reaches unless its module matches one of its
`DoNotConvert` rules; TensorFlow, TFP and Keras are listed there, this package
is not. Converting it cost the first trace of a loss about 3.4 s against
`tfp.vi`'s 0.2 s, and 44 s for a `log_marginal_likelihood` call, and it
changed what a user's target may do: called through our (converted) code, a
target with Python control flow on tensors was converted too, while through
`tfp.vi` (not converted) it raises. The package is written for graphs
(`tf.while_loop`, `tf.cond`), so it needs no conversion.

`exempt_from_autograph` adds the rule once; the package calls it on import.
The rules tuple is TensorFlow's (`autograph.core.config.CONVERSION_RULES`),
a private name: `tests/_internal/test_autograph.py` fails, naming it, when a
TensorFlow release moves it.
"""

from tensorflow.python.autograph.core import config as _autograph_config


def exempt_from_autograph(package: str) -> None:
    """Puts `DoNotConvert(package)` first in autograph's rules, once."""
    rules = _autograph_config.CONVERSION_RULES
    if any(
        isinstance(rule, _autograph_config.DoNotConvert) and rule.matches(package)
        for rule in rules
    ):
        return
    _autograph_config.CONVERSION_RULES = (
        _autograph_config.DoNotConvert(package),
        *rules,
    )
