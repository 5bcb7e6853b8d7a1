"""The progress line: step, loss and steps per second."""

import time

import numpy as np


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """The step, loss and steps per second: one refreshed line on a terminal."""

    def __init__(self, num_steps, stream):
        self._num_steps = num_steps
        self._stream = stream
        self._tty = _isatty(stream)
        self._last_print = 0.0

    def start(self, steps_done):
        self._start_step = steps_done
        self._start_time = time.perf_counter()

    def update(self, steps_done, loss):
        now = time.perf_counter()
        done = steps_done == self._num_steps
        if not self._tty and not done and now - self._last_print < 1.0:
            return
        self._last_print = now
        rate = (steps_done - self._start_step) / max(now - self._start_time, 1e-9)
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
