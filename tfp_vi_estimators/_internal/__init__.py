"""Private helpers shared by the package's layers (no public API).

- `checks`: argument checks that run before any tensor work.
- `parameter_maps`: rebuild a distribution with its tensor parameters mapped.
- `pre_image`: bijector-transformed samples that keep their pre-image, and
  `log q_{stop(phi)}` read from it (the doubly reparameterized estimators).
- `quasi_monte_carlo`: randomized Sobol' base noise pushed through a
  surrogate's reparameterization (`sampling='rqmc'`).
- `reparameterization`: whether a surrogate (or each of its parts) is
  reparameterized.
- `tfp_internals`: every import from TFP's private modules, in one place.
"""
