"""Numbers as text: table cells, Markdown tables, JSON values."""

import dataclasses

import numpy as np

from tfp_vi_estimators.report.formatting import fmt, markdown_table, to_jsonable


def test_fmt():
    assert fmt(None) == "-"
    assert fmt(float("nan")) == "-"
    assert fmt(np.int64(7)) == "7"
    assert fmt(0.123456) == "0.123"
    assert fmt(0.123456, 2) == "0.12"


def test_markdown_table():
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


@dataclasses.dataclass(frozen=True)
class _Result:
    values: tuple
    extra: dict


def test_to_jsonable_turns_results_and_non_finite_numbers_into_json():
    result = _Result((np.float32(0.5), float("inf")), {1: np.array([np.int64(2)])})
    assert to_jsonable(result) == {"values": [0.5, None], "extra": {"1": [2]}}
