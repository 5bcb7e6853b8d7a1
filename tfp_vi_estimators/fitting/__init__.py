"""`fit_surrogate_posterior`: `tfp.vi`'s fitting loop with correct gradients.

The same parameters, defaults, seed splitting and loss trace as
`tfp.vi.fit_surrogate_posterior`, minimizing this package's
`monte_carlo_variational_loss`, plus what a long fit needs: a choice of
gradient estimator, a progress line, resumable checkpoints, and a clear stop at
the first non-finite loss or gradient.

The optimization runs in compiled chunks of steps (`tf.function`, with XLA
when `jit_compile=True`); between chunks, on the host, the progress line is
updated, a checkpoint may be written and the non-finite flag is read. Each step
splits the seed exactly as `tfp.math.minimize` does, so the chunking changes
nothing in the result:

```none
state[0]                  = sanitize_seed(seed, salt='minimize')
seed[t], state[t + 1]     = split_seed(state[t], n=2)      # t = 0, 1, ...
loss[t], grads[t]         = value_and_gradient(loss_fn(seed=seed[t]))
```
"""

from tfp_vi_estimators.fitting.api import fit_surrogate_posterior
from tfp_vi_estimators.fitting.checkpoints import CorruptCheckpointError
from tfp_vi_estimators.fitting.loop import NonFiniteLossError
from tfp_vi_estimators.fitting.stateless import fit_surrogate_posterior_stateless

__all__ = [
    "CorruptCheckpointError",
    "NonFiniteLossError",
    "fit_surrogate_posterior",
    "fit_surrogate_posterior_stateless",
]
