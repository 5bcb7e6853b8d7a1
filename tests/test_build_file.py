"""Checks that the Bazel ``BUILD`` file mirrors the source tree.

Bazel cannot fetch ``rules_python`` offline on the development machines, so
instead of building ``BUILD`` this test parses it (Starlark here is plain Python
syntax) and compares it with the files on disk:

* every ``.py`` file under ``tfp_vi_estimators/`` is in the ``srcs`` of the
  ``py_library`` named ``tfp_vi_estimators``;
* every test module under ``tests/`` (``test_*.py`` or ``*_test.py``, pytest's
  default patterns) has a ``py_test`` whose ``srcs`` and ``main`` name it;
* every file that ``BUILD`` names exists, and target names are unique.

Fix a failure with ``python tools/gen_build.py``. Standard library only: no
TensorFlow import, so this runs in well under a second.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY_NAME = "tfp_vi_estimators"
PACKAGE_DIR = "tfp_vi_estimators"
TESTS_DIR = "tests"
RULES = ("py_library", "py_test", "py_binary")


def _python_files(root: Path, subdir: str) -> list[str]:
    base = root / subdir
    if not base.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in base.rglob("*.py")
        if not any(
            part == "__pycache__" or part.startswith(".")
            for part in p.relative_to(root).parts
        )
    )


def _is_test_module(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py")


def parse_build(text: str) -> tuple[list[dict], list[str]]:
    """Returns the rule calls in a BUILD file as dicts, and any parse problems.

    Each dict holds the rule kind under ``"rule"`` and its keyword arguments,
    evaluated as literals. A non-literal argument (``glob(...)``, a variable)
    is reported as a problem: the check needs explicit file lists.
    """
    try:
        module = ast.parse(text, filename="BUILD")
    except SyntaxError as err:
        return [], [f"BUILD does not parse: {err}"]
    rules, problems = [], []
    for node in module.body:
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not (isinstance(call.func, ast.Name) and call.func.id in RULES):
            continue
        rule = {"rule": call.func.id, "lineno": node.lineno}
        for keyword in call.keywords:
            try:
                rule[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:
                problems.append(
                    f"BUILD line {keyword.value.lineno}: {call.func.id} argument "
                    f"'{keyword.arg}' is not a literal (list files explicitly, "
                    "no glob)"
                )
        rules.append(rule)
    return rules, problems


def check_build(root: Path) -> list[str]:
    """Returns one message per disagreement between ``root/BUILD`` and the tree.

    An empty list means the BUILD file mirrors the tree.
    """
    build = root / "BUILD"
    if not build.is_file():
        return [f"{build} does not exist"]
    rules, problems = parse_build(build.read_text(encoding="utf-8"))

    seen_names: dict[str, int] = {}
    for rule in rules:
        name = rule.get("name")
        if not name:
            problems.append(f"BUILD line {rule['lineno']}: {rule['rule']} has no name")
        elif name in seen_names:
            problems.append(
                f"BUILD line {rule['lineno']}: duplicate target name '{name}' "
                f"(first at line {seen_names[name]})"
            )
        else:
            seen_names[name] = rule["lineno"]

    # Every file BUILD names must exist.
    for rule in rules:
        named = list(rule.get("srcs", []))
        if "main" in rule:
            named.append(rule["main"])
        for path in named:
            if not (root / path).is_file():
                problems.append(
                    f"BUILD target '{rule.get('name')}' names {path}, "
                    "which does not exist"
                )

    # Every package module is in the library.
    libraries = [
        r for r in rules if r["rule"] == "py_library" and r.get("name") == LIBRARY_NAME
    ]
    if not libraries:
        problems.append(f"BUILD has no py_library named '{LIBRARY_NAME}'")
    library_srcs = {src for r in libraries for src in r.get("srcs", [])}
    for path in _python_files(root, PACKAGE_DIR):
        if path not in library_srcs:
            problems.append(
                f"{path} is missing from the srcs of py_library '{LIBRARY_NAME}'"
            )

    # Every test module has a py_test that runs it.
    tests_by_src: dict[str, list[dict]] = {}
    for rule in rules:
        if rule["rule"] == "py_test":
            for src in rule.get("srcs", []):
                tests_by_src.setdefault(src, []).append(rule)
            if rule.get("main") not in rule.get("srcs", []):
                problems.append(
                    f"py_test '{rule.get('name')}': main {rule.get('main')!r} is "
                    "not one of its srcs"
                )
            if f":{LIBRARY_NAME}" not in rule.get("deps", []):
                problems.append(
                    f"py_test '{rule.get('name')}' does not depend on ':{LIBRARY_NAME}'"
                )
    for path in _python_files(root, TESTS_DIR):
        if _is_test_module(path) and path not in tests_by_src:
            problems.append(f"{path} has no py_test in BUILD")
    return problems


# --- the real repository ----------------------------------------------------


def test_build_file_mirrors_tree():
    problems = check_build(REPO_ROOT)
    assert not problems, (
        "BUILD disagrees with the tree (regenerate with "
        "`python tools/gen_build.py`):\n  " + "\n  ".join(problems)
    )


# --- the check itself, on small fake trees ----------------------------------

_GOOD_BUILD = """\
load("@rules_python//python:defs.bzl", "py_library", "py_test")

py_library(
    name = "tfp_vi_estimators",
    srcs = [
        "tfp_vi_estimators/__init__.py",
        "tfp_vi_estimators/estimators/__init__.py",
        "tfp_vi_estimators/estimators/score.py",
    ],
)

py_test(
    name = "test_score",
    srcs = ["tests/estimators/test_score.py"],
    main = "tests/estimators/test_score.py",
    deps = [":tfp_vi_estimators"],
)
"""


def _make_tree(root: Path, build: str = _GOOD_BUILD) -> Path:
    for rel in (
        "tfp_vi_estimators/__init__.py",
        "tfp_vi_estimators/estimators/__init__.py",
        "tfp_vi_estimators/estimators/score.py",
        "tests/estimators/test_score.py",
        "tests/conftest.py",  # not a test module: needs no py_test
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    # Bytecode caches are not sources.
    (root / "tfp_vi_estimators/__pycache__").mkdir()
    (root / "tfp_vi_estimators/__pycache__/stale.py").write_text("")
    (root / "BUILD").write_text(build)
    return root


def test_check_accepts_consistent_tree(tmp_path):
    assert check_build(_make_tree(tmp_path)) == []


def test_check_reports_module_missing_from_library(tmp_path):
    root = _make_tree(tmp_path)
    (root / "tfp_vi_estimators/estimators/vimco.py").write_text("")
    problems = check_build(root)
    assert problems == [
        "tfp_vi_estimators/estimators/vimco.py is missing from the srcs of "
        "py_library 'tfp_vi_estimators'"
    ]


def test_check_reports_test_without_py_test(tmp_path):
    root = _make_tree(tmp_path)
    (root / "tests/test_new.py").write_text("")
    (root / "tests/estimators/vimco_test.py").write_text("")
    problems = check_build(root)
    assert sorted(problems) == [
        "tests/estimators/vimco_test.py has no py_test in BUILD",
        "tests/test_new.py has no py_test in BUILD",
    ]


def test_check_reports_file_that_does_not_exist(tmp_path):
    root = _make_tree(tmp_path)
    (root / "tfp_vi_estimators/estimators/score.py").unlink()
    (root / "tests/estimators/test_score.py").unlink()
    problems = check_build(root)
    assert (
        "BUILD target 'tfp_vi_estimators' names "
        "tfp_vi_estimators/estimators/score.py, which does not exist" in problems
    )
    assert (
        "BUILD target 'test_score' names tests/estimators/test_score.py, "
        "which does not exist" in problems
    )


def test_check_rejects_glob_and_missing_library(tmp_path):
    build = _GOOD_BUILD.replace(
        'name = "tfp_vi_estimators",\n    srcs = [',
        'name = "lib",\n    srcs = glob(["**/*.py"]) + [',
    )
    problems = check_build(_make_tree(tmp_path, build))
    assert any("is not a literal" in p for p in problems), problems
    assert "BUILD has no py_library named 'tfp_vi_estimators'" in problems
    assert (
        "tfp_vi_estimators/__init__.py is missing from the srcs of "
        "py_library 'tfp_vi_estimators'" in problems
    )


def test_check_reports_duplicate_names_and_bad_main(tmp_path):
    build = _GOOD_BUILD + _GOOD_BUILD.split("\n\n")[2].replace(
        'main = "tests/estimators/test_score.py"', 'main = "tests/other.py"'
    )
    problems = check_build(_make_tree(tmp_path, build))
    assert any("duplicate target name 'test_score'" in p for p in problems), problems
    assert any("main 'tests/other.py' is not one of its srcs" in p for p in problems)


def test_check_reports_missing_build_file(tmp_path):
    root = _make_tree(tmp_path)
    (root / "BUILD").unlink()
    assert check_build(root) == [f"{root / 'BUILD'} does not exist"]


def test_generator_output_passes_check(tmp_path):
    """tools/gen_build.py and this check agree, including on name clashes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_build", REPO_ROOT / "tools" / "gen_build.py"
    )
    gen_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_build)

    root = _make_tree(tmp_path)
    (root / "tests/test_score.py").write_text("")  # same stem as a nested test
    (root / "tests/estimators/__init__.py").write_text("")
    (root / "BUILD").write_text(gen_build.generate(root))
    assert check_build(root) == []
    assert gen_build.generate(root) == (root / "BUILD").read_text()  # deterministic
    assert gen_build.main(["--root", str(root), "--check"]) == 0


if __name__ == "__main__":
    found = check_build(REPO_ROOT)
    for problem in found:
        print(problem)
    print("BUILD mirrors the tree" if not found else f"{len(found)} problem(s)")
    sys.exit(1 if found else 0)
