"""Numbers as text: compact table cells, Markdown tables, JSON-safe values."""

import dataclasses
import math

import numpy as np

__all__ = ["fmt", "markdown_table", "to_jsonable"]


def fmt(value, digits=3):
    """Compact number for Markdown tables (`-` for None/NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:.{digits}g}"


def markdown_table(header, rows):
    """A Markdown table from a header row and rows of cells (strings)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def to_jsonable(value):
    """Floats (NaN and inf as None), lists and dicts that `json` can write.

    Dataclass instances (a section's result) become dicts of their fields.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
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
