"""Csiszar f-functions (TFP's own, re-exported) and their derivatives.

Every discrepancy of `tfp.vi` is available here under the same name; they are
TFP's functions, not copies, so a `tfp.vi` user gets identical values.

The doubly reparameterized estimator needs the first two derivatives of the
discrepancy at the importance-weighted bound. `discrepancy_derivatives` takes
them by automatic differentiation of whatever elementwise callable the user
passed, so user-defined discrepancies work too.
"""

import tensorflow as tf
from tensorflow_probability import vi as _tfp_vi

amari_alpha = _tfp_vi.amari_alpha
arithmetic_geometric = _tfp_vi.arithmetic_geometric
chi_square = _tfp_vi.chi_square
dual_csiszar_function = _tfp_vi.dual_csiszar_function
jeffreys = _tfp_vi.jeffreys
jensen_shannon = _tfp_vi.jensen_shannon
kl_forward = _tfp_vi.kl_forward
kl_reverse = _tfp_vi.kl_reverse
log1p_abs = _tfp_vi.log1p_abs
modified_gan = _tfp_vi.modified_gan
pearson = _tfp_vi.pearson
squared_hellinger = _tfp_vi.squared_hellinger
symmetrized_csiszar_function = _tfp_vi.symmetrized_csiszar_function
t_power = _tfp_vi.t_power
total_variation = _tfp_vi.total_variation
triangular = _tfp_vi.triangular

CSISZAR_FUNCTIONS = (
    "amari_alpha",
    "arithmetic_geometric",
    "chi_square",
    "dual_csiszar_function",
    "jeffreys",
    "jensen_shannon",
    "kl_forward",
    "kl_reverse",
    "log1p_abs",
    "modified_gan",
    "pearson",
    "squared_hellinger",
    "symmetrized_csiszar_function",
    "t_power",
    "total_variation",
    "triangular",
)


def discrepancy_derivatives(discrepancy_fn, logu):
    """First and second derivatives of an elementwise discrepancy, stopped.

    ```none
    f1 = d f(t) / dt,   f2 = d^2 f(t) / dt^2,   evaluated at t = logu
    ```

    Args:
      discrepancy_fn: elementwise Python callable `f(logu)`, a Csiszar function
        in log space such as `kl_reverse`.
      logu: floating `Tensor` of points at which to differentiate.

    Returns:
      f1, f2: `Tensor`s shaped like `logu`, with no gradient flowing through
        them. A derivative that does not depend on `logu` (for example the
        constant `f1` of `kl_reverse`) comes back as the right constant, and an
        absent one as zeros.
    """
    t = tf.stop_gradient(tf.convert_to_tensor(logu))
    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape() as outer:
        outer.watch(t)
        with tf.GradientTape() as inner:
            inner.watch(t)
            f = discrepancy_fn(t)
        f1 = inner.gradient(f, t, unconnected_gradients=zero)
    f2 = outer.gradient(f1, t, unconnected_gradients=zero)
    return tf.stop_gradient(f1), tf.stop_gradient(f2)
