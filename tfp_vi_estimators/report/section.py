"""What a report section is, and what the report keeps of one that has run.

A section is a module with a name, a title and these functions:

- `compute(settings, progress=silent)`: the measurement; returns a frozen
  dataclass whose fields are the section's numbers (report.json holds them as
  they are, through `dataclasses.asdict`);
- `render(result)`: the section's Markdown body;
- `summarize(result)`: `(label, text)` pairs for the summary table;
- `plot(result, path)`: writes the section's PNG (only for sections that plot).

The module ends with its `NAME`, `TITLE` and `SECTION = Section(...)`, which
gathers them; the runner (`report.run`) calls them and keeps a
`SectionResult`. Computing a section needs no matplotlib and writes nothing;
only `plot` writes a file, where the runner says.
"""

import dataclasses
import typing

__all__ = ["Section", "SectionResult"]


@dataclasses.dataclass(frozen=True)
class Section:
    """A report section's name, title and functions (see the module docstring).

    Attributes:
      name: the section's name in `--sections`, report.json and file names.
      title: heading of the section in report.md.
      compute: `(settings, progress) -> result`, a frozen dataclass.
      render: `result -> str`, the Markdown body.
      summarize: `result -> [(label, text)]` for the summary table.
      plot: `(result, path) -> None`, writes a PNG; None for no plot.
      plot_caption: alternative text of the plot's image link in report.md.
    """

    name: str
    title: str
    compute: typing.Callable
    render: typing.Callable
    summarize: typing.Callable
    plot: typing.Callable | None = None
    plot_caption: str = ""

    @property
    def plot_file(self):
        """File name of the section's PNG in the output directory, or None."""
        return None if self.plot is None else f"{self.name}.png"


@dataclasses.dataclass(frozen=True)
class SectionResult:
    """What the report keeps of a section that has run.

    Attributes:
      title: heading of the section in report.md.
      markdown: body of the section (tables, text, image links).
      data: JSON-serializable dict with all the section's numbers.
      summary: short `(label, text)` pairs for the console summary table.
      plots: file names (inside the output directory) of the PNGs written.
      status: `'ok'` or `'error'`.
    """

    title: str
    markdown: str
    data: dict
    summary: tuple = ()
    plots: tuple = ()
    status: str = "ok"
