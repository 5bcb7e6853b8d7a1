"""Private helpers shared by the package's layers (no public API).

- `checks`: argument checks that run before any tensor work.
- `parameter_maps`: rebuild a distribution with its tensor parameters mapped.
- `reparameterization`: whether a surrogate (or each of its parts) is
  reparameterized.
- `tfp_internals`: every import from TFP's private modules, in one place.
"""
