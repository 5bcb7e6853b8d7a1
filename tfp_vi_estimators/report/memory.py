"""Peak resident memory and CPU time of the report's process, for its footer.

```none
peak resident = ru_maxrss(RUSAGE_SELF)       (the high-water mark, never falls)
children      = ru_maxrss(RUSAGE_CHILDREN)   (the largest finished child)
cpu seconds   = user + system time of the process and its finished children
```

`ru_maxrss` is in kilobytes on Linux and in bytes on macOS. The peak after
each section tells which section raised it; the current resident size
(`/proc/self/statm`, Linux only) tells how much the allocator kept.
"""

import dataclasses
import os
import resource
import sys

__all__ = ["Usage", "current_rss_mb", "peak_rss_increase_mb", "usage"]

_MB = 2.0**20


@dataclasses.dataclass(frozen=True)
class Usage:
    """Resource use of the process so far.

    Attributes:
      peak_rss_mb: peak resident set size of this process, in MiB.
      children_peak_rss_mb: peak resident set size of the largest finished
        child process, in MiB (0 if none).
      current_rss_mb: resident set size now, in MiB (None where unknown).
      cpu_seconds: user plus system CPU time of the process and its finished
        children.
    """

    peak_rss_mb: float
    children_peak_rss_mb: float
    current_rss_mb: float | None
    cpu_seconds: float

    @property
    def total_peak_rss_mb(self) -> float:
        """Peak of this process plus that of its largest child (an upper bound)."""
        return self.peak_rss_mb + self.children_peak_rss_mb


def _maxrss_mb(who):
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, else kB
    return resource.getrusage(who).ru_maxrss * scale / _MB


def current_rss_mb() -> float | None:
    """Resident set size of this process now, in MiB; None off Linux."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / _MB


def usage() -> Usage:
    """Peak and current resident memory and CPU time so far: a `Usage`."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(
        peak_rss_mb=_maxrss_mb(resource.RUSAGE_SELF),
        children_peak_rss_mb=_maxrss_mb(resource.RUSAGE_CHILDREN),
        current_rss_mb=current_rss_mb(),
        cpu_seconds=me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
    )


def peak_rss_increase_mb(function, interval_seconds=0.002):
    """`(function(), MB)`: the peak resident size while it ran, above that before.

    A thread samples the resident size (`current_rss_mb`) every
    `interval_seconds` while `function` runs (TensorFlow releases the GIL in
    its kernels). Memory the allocator kept from earlier calls and reuses is
    not counted, so this is a lower bound on what `function` needed; the peak
    of a fresh process (`benchmarks/memory.py`) is the upper one. None off
    Linux.
    """
    import threading

    before = current_rss_mb()
    if before is None:
        return function(), None
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(interval_seconds):
            peak[0] = max(peak[0], current_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = function()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], current_rss_mb())
    return result, peak[0] - before
