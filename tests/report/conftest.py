"""The tiny report, run once for every report test that reads its output.

The tiny preset runs every section and code path with a handful of steps and
draws (under two minutes here); its numbers mean nothing. The `--quick` and
full runs are not part of the tests.
"""

import pytest

from tfp_vi_estimators.report import cli


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory):
    """`(output directory, report dict)` of `report --tiny`."""
    out = tmp_path_factory.mktemp("report")
    report = cli.main(["--tiny", "--out", str(out)])
    return out, report
