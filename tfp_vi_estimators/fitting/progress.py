"""The progress line: step, loss and steps per second."""

import time

import numpy as np


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """The step, loss and steps per second: one refreshed line on a terminal.

    The rate is measured from the end of the first chunk, which also traces
    and compiles the steps, so it is the steady rate of the compiled loop
    (host round trips between chunks included).
    """

    def __init__(self, num_steps, stream):
        self._num_steps = num_steps
        self._stream = stream
        self._tty = _isatty(stream)
        self._last_print = 0.0
        self._start_step = self._start_time = None
        self._first_update = None

    def start(self, steps_done):
        self._start_step = steps_done
        self._start_time = time.perf_counter()
        self._first_update = None

    def _rate(self, steps_done, now):
        if self._first_update is None:
            self._first_update = (steps_done, now)
            steps, since = steps_done - self._start_step, self._start_time
        else:
            steps, since = steps_done - self._first_update[0], self._first_update[1]
        return steps / max(now - since, 1e-9)

    def update(self, steps_done, loss):
        now = time.perf_counter()
        rate = self._rate(steps_done, now)
        done = steps_done == self._num_steps
        if not self._tty and not done and now - self._last_print < 1.0:
            return
        self._last_print = now
        loss = float(np.mean(loss))
        width = len(str(self._num_steps))
        line = (
            f"step {steps_done:>{width}}/{self._num_steps}  loss {loss:.6g}  "
            f"{rate:.1f} steps/s"
        )
        if self._tty:
            self._stream.write("\r" + line.ljust(60))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self):
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
