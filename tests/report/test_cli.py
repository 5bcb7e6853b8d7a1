"""The report's command line: flag validation."""

import pytest

from tfp_vi_estimators.report import cli


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--quick", "--tiny"], "not allowed with argument"),
        (["--sections", "nope"], "--sections: unknown nope"),
        (["--sections", ","], "--sections: unknown (empty)"),
        (["--seed", "-1"], "--seed must be non-negative"),
        (["--seed", "x"], "invalid int value"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_must_not_be_a_file(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(SystemExit):
        cli.main(["--out", str(path)])
    assert "is not a directory" in capsys.readouterr().err
