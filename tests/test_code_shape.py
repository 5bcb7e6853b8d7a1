"""Short functions: no function of the package has a body over 50 lines.

The body is counted from its first statement after the docstring to its last
line; a public docstring may be long (TFP style), the code may not.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tfp_vi_estimators"
MAX_BODY_LINES = 50


def _body_lengths():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if (
                isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
                and len(body) > 1
            ):
                body = body[1:]
            name = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
            yield name, node.end_lineno - body[0].lineno + 1


def test_no_function_body_is_longer_than_fifty_lines():
    long = {name: n for name, n in _body_lengths() if n > MAX_BODY_LINES}
    assert not long, long


def test_the_measure_sees_every_function():
    # A measure that found nothing would pass by construction.
    lengths = dict(_body_lengths())
    assert len(lengths) > 300
    assert max(lengths.values()) > 30
