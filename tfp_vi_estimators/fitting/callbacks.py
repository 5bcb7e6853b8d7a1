"""What the fit loop does on the host between compiled chunks: its callbacks.

As Keras drives `keras.callbacks.Callback`s around its steps, the fit loop
(`loop.run_fit`) drives these around its chunks:

```none
restored = [c.on_fit_begin(fit) for c in callbacks]      # a checkpoint's state
[c.on_steps_begin(done) for c in callbacks]
while steps remain:
    n = min(max_chunk, steps left, *[c.chunk_limit(done) for c in callbacks])
    state, trace = compiled_steps(state, done, n)          # one compiled call
    [c.on_chunk_end(ChunkEnd(done, n_run, state, seconds, converged), traces)
     for c in callbacks]
[c.on_fit_end(done) for c in callbacks]
```

- `ProgressCallback`: the progress line; sizes chunks by time so it moves.
- `CheckpointCallback`: restores the latest checkpoint when the fit begins,
  ends chunks on checkpoint boundaries and saves there.
- `KhatCallback`: the PSIS k-hat of the fitted surrogate when the fit ends.

The convergence criterion is not among them: it reads every step's loss and
gradients, so it runs inside the compiled steps (`steps.CompiledSteps`).
"""

import dataclasses
import sys
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import psis
from tfp_vi_estimators.fitting import distributed
from tfp_vi_estimators.fitting.checkpoints import _CheckpointStore
from tfp_vi_estimators.fitting.progress import _Progress

__all__ = [
    "CheckpointCallback",
    "ChunkEnd",
    "FitCallback",
    "FitContext",
    "KhatCallback",
    "ProgressCallback",
]

# With a progress line, chunks aim at this many seconds so the line moves
# while a chunk's host round trip stays a small fraction of its time.
_SECONDS_PER_CHUNK = 0.25


@dataclasses.dataclass(frozen=True)
class FitContext:
    """What a callback may read of the fit when it begins.

    Attributes:
      num_steps: the fit's number of steps.
      max_chunk: the most steps of one compiled call.
      variables: the variables trained.
      optimizer: the optimizer.
      criterion: the convergence criterion, or `None`.
      specs: the loop state's and trace row's `steps.Specs`.
      iterator: the data iterator saved with checkpoints, or `None`.
      strategy: the `tf.distribute` strategy, or `None`.
    """

    num_steps: int
    max_chunk: int
    variables: list
    optimizer: Any
    criterion: Any
    specs: Any
    iterator: Any
    strategy: Any


@dataclasses.dataclass(frozen=True)
class ChunkEnd:
    """A chunk that ended: `steps_done` in all, `steps_run` in this chunk, the
    loop `state` after it, its wall time in `seconds`, and whether the fit
    `converged`."""

    steps_done: int
    steps_run: int
    state: Any
    seconds: float
    converged: bool


class FitCallback:
    """A no-op callback; subclasses override what they need.

    `needs_seed`: whether the fit must draw seeded samples even without a
    `seed` (a checkpointed fit draws a seed and saves it, so a resumed fit
    continues the same sample stream).
    """

    needs_seed = False

    def on_fit_begin(self, fit: FitContext):
        """Called once before the first chunk; may return a restored
        `(steps_done, state, trace)`."""
        del fit

    def on_steps_begin(self, steps_done: int):
        """Called once before the first chunk, with the steps already done."""
        del steps_done

    def chunk_limit(self, steps_done: int):
        """The most steps the next chunk may run, or `None` for no limit."""
        del steps_done

    def on_chunk_end(self, chunk: "ChunkEnd", traces: list):
        """After a chunk; `traces` is the list of the chunks' traces so far."""
        del chunk, traces

    def on_fit_end(self, steps_done):
        """Called once after the last chunk."""
        del steps_done


class ProgressCallback(FitCallback):
    """The step, loss and rate on one line of `stream`; chunks sized by time.

    The first chunk also traces and compiles, so it is short (10 steps) to
    show progress soon; later chunks aim at a quarter of a second.
    """

    def __init__(self, num_steps, stream=None):
        self._progress = _Progress(num_steps, stream or sys.stderr)
        self._max_chunk = self._length = None

    def on_fit_begin(self, fit):
        self._max_chunk = fit.max_chunk
        self._length = min(10, fit.max_chunk)

    def on_steps_begin(self, steps_done):
        self._progress.start(steps_done)  # the rate counts from here

    def chunk_limit(self, steps_done):
        return self._length

    def on_chunk_end(self, chunk, traces):
        self._progress.update(chunk.steps_done, chunk.state.quantities.loss)
        wanted = int(chunk.steps_run * _SECONDS_PER_CHUNK / max(chunk.seconds, 1e-6))
        self._length = max(1, min(self._max_chunk, wanted, 4 * chunk.steps_run))

    def on_fit_end(self, steps_done):
        self._progress.close()


class CheckpointCallback(FitCallback):
    """Resumable fits: restores the latest checkpoint, saves every `every` steps.

    Chunks end on checkpoint boundaries; a checkpoint is also written at the
    last step and at convergence. See `checkpoints._CheckpointStore`.
    """

    needs_seed = True

    def __init__(self, directory, every, fingerprint):
        self._directory = directory
        self._every = every
        self._fingerprint = fingerprint
        self._store = None
        self._num_steps = None

    def on_fit_begin(self, fit):
        self._num_steps = fit.num_steps
        self._store = _CheckpointStore(
            self._directory,
            self._fingerprint,
            fit.variables,
            fit.optimizer,
            fit.specs.state,
            fit.specs.trace,
            iterator=fit.iterator,
            write_directory=distributed.checkpoint_write_dir(
                fit.strategy, self._directory
            ),
        )
        restored = self._store.restore()
        if restored is not None and restored[0] > fit.num_steps:
            raise ValueError(
                f"The checkpoint in {self._directory!r} is at step "
                f"{restored[0]}, beyond `num_steps={fit.num_steps}`."
            )
        return restored

    def chunk_limit(self, steps_done):
        return self._every - steps_done % self._every

    def on_chunk_end(self, chunk, traces):
        done = chunk.steps_done
        if done % self._every == 0 or done == self._num_steps or chunk.converged:
            traces[:] = [concat(traces)]
            self._store.save(done, chunk.state, traces[0])


class KhatCallback(FitCallback):
    """PSIS k-hat of the fitted surrogate when the fit ends (`psis_num_draws`).

    The draws use a seed stream apart from the fit's; the verdict is printed
    to stderr when `verbose`.
    """

    def __init__(self, loss, num_draws, seed, verbose):
        self._loss = loss
        self._num_draws = num_draws
        self._seed = seed
        self._verbose = verbose
        self.pareto_k = self.message = None

    def on_fit_end(self, steps_done):
        psis_seed = tfp.random.split_seed(self._seed, n=2, salt="psis_report")[1]
        self.pareto_k, self.message = psis.khat_report(
            self._loss.target_log_prob_fn,
            self._loss.surrogate_posterior,
            self._num_draws,
            psis_seed,
        )
        if self._verbose:
            print(self.message, file=sys.stderr)


def concat(traces):
    """The chunks' traces as one."""
    if len(traces) == 1:
        return traces[0]
    return tf.nest.map_structure(lambda *ts: tf.concat(ts, axis=0), *traces)
