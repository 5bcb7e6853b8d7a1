"""Csiszar f-functions (TFP's own, re-exported) and their derivatives.

Every discrepancy of `tfp.vi` is available here under the same name; they are
TFP's functions, not copies, so a `tfp.vi` user gets identical values.

The doubly reparameterized estimator needs the first two derivatives of the
discrepancy at the importance-weighted bound. `discrepancy_derivatives` takes
them by automatic differentiation of whatever elementwise callable the user
passed, so user-defined discrepancies work too.
"""

from tensorflow_probability import vi as _tfp_vi

from tfp_vi_estimators._internal.discrepancy import discrepancy_derivatives

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

# The names above: every Csiszar function of `tfp.vi`, as TFP's own objects.
CSISZAR_FUNCTIONS = tuple(
    sorted(
        name
        for name, value in list(globals().items())
        if not name.startswith("_") and value is getattr(_tfp_vi, name, None)
    )
)

__all__ = [*CSISZAR_FUNCTIONS, "CSISZAR_FUNCTIONS", "discrepancy_derivatives"]
