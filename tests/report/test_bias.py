"""The bias section: z-scores, streamed moments, tiny-run rows."""

import numpy as np

from tfp_vi_estimators import csiszar
from tfp_vi_estimators.diagnostics import moments_of_draws
from tfp_vi_estimators.problems import DecoderProblem
from tfp_vi_estimators.report import bias


def test_z_score():
    assert bias.z_score(moments_of_draws(np.zeros(10))) == 0.0  # identical draws
    assert bias.z_score(moments_of_draws(np.full(10, 2.0))) == np.inf
    # mean 2, sd sqrt(2), se 1
    assert bias.z_score(moments_of_draws(np.array([1.0, 3.0]))) == 2.0


def test_streamed_rows_equal_the_direct_computation_on_the_same_draws():
    # 120 draws in chunks of 50: two whole chunks and 20 of a third.
    problem = DecoderProblem(50, **bias.PARAMETERS)
    rows = bias.measure_case(problem, "kl_reverse", 2, 120, (3, 4))
    chunk_seeds = bias.tfp.random.split_seed((3, 4), n=3)
    draws = {
        impl: np.concatenate(
            [
                np.stack(
                    bias.per_draw_gradients(problem, impl, 2, csiszar.kl_reverse, s)
                )
                for s in chunk_seeds
            ],
            axis=1,
        )[:, :120]
        for impl in bias.IMPLEMENTATIONS
    }
    reference, ours, theirs = (draws[impl] for impl in bias.IMPLEMENTATIONS)
    for i, row in enumerate(rows):
        assert row["variable"] == bias.VARIABLES[i]
        np.testing.assert_allclose(row["reference_mean"], reference[i].mean())
        np.testing.assert_allclose(row["tfp_mean"], theirs[i].mean())
        np.testing.assert_allclose(
            row["reference_se"], reference[i].std(ddof=1) / np.sqrt(120)
        )
        for z, implementation in (("z_ours", ours), ("z_tfp", theirs)):
            difference = implementation[i] - reference[i]
            se = difference.std(ddof=1) / np.sqrt(120)
            expected = 0.0 if se == 0.0 else difference.mean() / se
            np.testing.assert_allclose(row[z], expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            row["sd_ratio_ours"], ours[i].std(ddof=1) / reference[i].std(ddof=1)
        )


def test_tiny_report_rows(tiny_report):
    _, report = tiny_report
    rows = report["sections"]["bias"]["data"]["rows"]
    assert len(rows) == 5 * 2 * 3  # discrepancies x K x parameters
    # The decoder gradient at K = 1 is the same for every implementation.
    for r in rows:
        if r["K"] == 1 and r["variable"] == "theta":
            assert r["z_ours"] == 0.0 and r["z_tfp"] == 0.0
    model = report["sections"]["bias"]["data"]["model"]
    assert model == dict(loc=0.2, scale=0.6, theta=1.3, x=1.5, likelihood_scale=0.8)
