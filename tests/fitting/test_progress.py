"""The progress line: printed when asked, silent by default under CI."""

import keras

from tfp_vi_estimators.fitting import fit_surrogate_posterior


def test_progress_line_and_ci_default(capsys, monkeypatch, problem):
    fit_surrogate_posterior(
        problem.target,
        problem.surrogate(),
        keras.optimizers.Adam(0.1),
        20,
        seed=problem.seed,
        progress=True,
    )
    err = capsys.readouterr().err
    assert "step 20/20" in err and "loss" in err and "steps/s" in err
    monkeypatch.setenv("CI", "true")
    fit_surrogate_posterior(
        problem.target,
        problem.surrogate(),
        keras.optimizers.Adam(0.1),
        5,
        seed=problem.seed,
    )
    assert capsys.readouterr().err == ""
