"""Plotting helpers: a figure without pyplot, saved as PNG.

The only module of the package that imports matplotlib, and only when a plot
is drawn, so that computing and rendering a report section needs none.
"""

__all__ = ["log_log", "new_figure", "save_figure"]


def new_figure(ncols=1, width=6.0, height=4.0, nrows=1):
    """A `Figure` with `nrows x ncols` axes (a flat list, row by row),
    independent of any pyplot backend; `width` and `height` are per axes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height * nrows))
    axes = [figure.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return figure, axes


def save_figure(figure, path):
    """Writes a matplotlib `Figure` as PNG through the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def log_log(ax):
    """Log scales on both axes of `ax`, labels on the major ticks only."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
