"""The package's layers hold: `lint-imports` checks the contracts in pyproject.toml.

The contracts (docs/architecture.md draws them): layers point down; estimators
import only tensorflow, tensorflow_probability, numpy and `_internal`; the loss
imports neither fitting, Keras, diagnostics nor the report; distributions
import no higher layer; only the report imports matplotlib.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept():
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    # The checker itself must be able to fail: the same root package with a
    # contract the code breaks (the loss imports the estimators).
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "tfp_vi_estimators"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "deliberately broken"\ntype = "forbidden"\n'
        'source_modules = ["tfp_vi_estimators.variational_loss"]\n'
        'forbidden_modules = ["tfp_vi_estimators.estimators"]\n'
    )
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout, result.stdout
