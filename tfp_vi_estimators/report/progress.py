"""The progress printer: one flushed line per step, `[elapsed] section: message`."""

import sys
import time

__all__ = ["Progress", "silent"]


class Progress:
    """Prints one flushed line per step: `[elapsed] section: message`."""

    def __init__(self, stream=None):
        self._start = time.perf_counter()
        self._stream = sys.stdout if stream is None else stream
        self.section = ""

    def elapsed(self):
        return time.perf_counter() - self._start

    def __call__(self, message):
        prefix = f"[{self.elapsed():7.1f} s] "
        if self.section:
            prefix += f"{self.section}: "
        print(prefix + message, flush=True, file=self._stream)


def silent(message):
    """A progress callback that prints nothing (the default of `compute`)."""
    del message
