"""Settings, section results, progress and plotting shared by the report sections."""

import dataclasses
import math
import sys
import time

import numpy as np

__all__ = ["PRESETS", "Progress", "SectionResult", "Settings", "save_figure"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of every section; `PRESETS` holds the tiny, quick and full ones."""

    name: str = "full"
    seed: int = 0
    # Roeder et al. Fig. 1: dimension, SGD steps and rate, KL recorded every
    # `fig1_record_every` steps (one compiled loop per record); an Adam run
    # with `fig1_adam_steps` > 0 shows what an adaptive optimizer does.
    fig1_dim: int = 100
    fig1_steps: int = 20_000
    fig1_learning_rate: float = 0.003
    fig1_record_every: int = 100
    fig1_adam_steps: int = 10_000
    fig1_adam_learning_rate: float = 0.001
    # SNR against K on the amortized Gaussian model.
    snr_ks: tuple = (1, 4, 16, 64)
    snr_dim: int = 20
    snr_num_data: int = 16
    snr_perturbation: float = 0.01
    snr_draws: int = 40_000
    # Variance table (None: every configuration of every problem).
    variance_draws: int = 5000
    variance_max_configs: int | None = None
    # Bias table: paired per-draw differences.
    bias_draws: int = 200_000
    bias_ks: tuple = (1, 4)
    # Speed table: rounds x steps per configuration; `None` configs: all.
    speed_rounds: int = 15
    speed_steps: int = 10
    speed_max_configs: int | None = None


PRESETS = {
    "full": Settings(),
    "quick": Settings(
        name="quick",
        fig1_steps=5000,
        fig1_record_every=50,
        fig1_adam_steps=0,
        snr_draws=8000,
        variance_draws=2000,
        bias_draws=50_000,
        speed_rounds=2,
        speed_steps=5,
    ),
    # For tests: every code path, seconds per section.
    "tiny": Settings(
        name="tiny",
        fig1_dim=8,
        fig1_steps=100,
        fig1_learning_rate=0.01,
        fig1_record_every=25,
        fig1_adam_steps=50,
        fig1_adam_learning_rate=0.01,
        snr_ks=(1, 4),
        snr_dim=3,
        snr_num_data=2,
        snr_draws=50,
        variance_draws=20,
        variance_max_configs=1,
        bias_draws=200,
        bias_ks=(1, 2),
        speed_rounds=1,
        speed_steps=1,
        speed_max_configs=1,
    ),
}


@dataclasses.dataclass
class SectionResult:
    """What a section hands back to the report.

    Attributes:
      title: heading of the section in report.md.
      markdown: body of the section (tables, text, image links).
      data: JSON-serializable dict with all the section's numbers.
      summary: short `(label, text)` pairs for the console summary table.
      plots: file names (inside the output directory) of the PNGs written.
      status: `'ok'`, `'skipped'` or `'error'`.
    """

    title: str
    markdown: str
    data: dict
    summary: list = dataclasses.field(default_factory=list)
    plots: list = dataclasses.field(default_factory=list)
    status: str = "ok"


class Progress:
    """Prints one flushed line per step: `[elapsed] section: message`."""

    def __init__(self, stream=None):
        self._start = time.perf_counter()
        # Bound now: a section may redirect sys.stdout into this object.
        self._stream = sys.stdout if stream is None else stream
        self.section = ""

    def elapsed(self):
        return time.perf_counter() - self._start

    def __call__(self, message):
        prefix = f"[{self.elapsed():7.1f} s] "
        if self.section:
            prefix += f"{self.section}: "
        print(prefix + message, flush=True, file=self._stream)


def save_figure(figure, path):
    """Writes a matplotlib `Figure` as PNG through the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def new_figure(ncols=1, width=6.0, height=4.0):
    """A `Figure` with `ncols` axes, independent of any pyplot backend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height))
    axes = [figure.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return figure, axes


def to_jsonable(value):
    """Floats (NaN and inf as None), lists and dicts that `json` can write."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    return value


def fmt(value, digits=3):
    """Compact number for Markdown tables (`-` for None/NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}g}"
