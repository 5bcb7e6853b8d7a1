"""Pathfinder in the accuracy section: its errors, the surrogates a fit starts
from, the comparisons with the ADVI arms and their verdicts, and its rows in
the tiny report."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators import low_rank
from tfp_vi_estimators.report import (
    accuracy,
    accuracy_fits,
    accuracy_metrics,
    accuracy_pathfinder,
    accuracy_pathfinder_tables,
    accuracy_targets,
)
from tfp_vi_estimators.report.settings import PRESETS

tfd = tfp.distributions
tfb = tfp.bijectors


def _low_rank_gaussian(batch, dim=5, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=[batch, dim])
    diag = rng.uniform(0.5, 1.5, size=[batch, dim])
    u, v = rng.normal(size=[2, batch, dim, rank]) * 0.5
    return tuple(tf.constant(x, tf.float64) for x in (loc, diag, u, v))


def test_low_rank_marginals_equal_the_dense_covariance():
    # The low-rank route of `gaussian_marginals` (no dense D x D) against
    # diag(A A^T) formed densely; float64, so the two agree to rounding.
    loc, diag, u, v = _low_rank_gaussian(3)
    q = tfd.MultivariateNormalLinearOperator(
        loc, low_rank.diag_plus_low_rank(diag, u, v)
    )
    m, s = accuracy_metrics.gaussian_marginals(q)
    dense = tf.linalg.diag(diag) + tf.matmul(u, v, transpose_b=True)
    want = tf.sqrt(tf.linalg.diag_part(tf.matmul(dense, dense, transpose_b=True)))
    np.testing.assert_allclose(m, loc, rtol=0, atol=0)
    np.testing.assert_allclose(s, want, rtol=1e-12)


@pytest.mark.parametrize("family", accuracy_pathfinder.CONTINUED_FAMILIES)
def test_a_family_starts_at_the_gaussian(family):
    initial = _low_rank_gaussian(2)
    loc, diag, u, v = initial
    q = accuracy_pathfinder.family_at(family, initial)
    assert q.batch_shape == [2] and q.event_shape == [5]
    assert len(q.trainable_variables) == 2  # loc and a transformed scale
    dense = tf.linalg.diag(diag) + tf.matmul(u, v, transpose_b=True)
    covariance = tf.matmul(dense, dense, transpose_b=True)
    np.testing.assert_allclose(q.mean(), loc, rtol=1e-12)
    if family == "mean-field":  # the marginals, no correlation
        got, covariance = q.variance(), tf.linalg.diag_part(covariance)
    else:
        got = q.covariance()
    np.testing.assert_allclose(got, covariance, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="`family` must be one of"):
        accuracy_pathfinder.family_at("affine", initial)


def test_steps_to_reach_needs_both_errors():
    mean = np.array([[0.5, 0.5], [0.1, 0.5], [0.1, 0.05]])
    sd = np.array([[0.1, 0.1], [0.5, 0.1], [0.1, 0.1]])
    # Column 0: the mean error is reached at step 2, both only at step 3.
    assert accuracy_pathfinder.steps_to_reach(mean, sd, 0.2, 0.2) == [3, 3]
    assert accuracy_pathfinder.steps_to_reach(mean, sd, 0.01, 0.2) == [None, None]


def test_steps_to_final_of_an_arm():
    # Replicate 0 is at both final medians (0.2, 0.2) from step 2, replicate 1
    # from step 3 only; replicate 2 diverged and is left out. Median: 2.5.
    nan = np.nan
    mean = np.array(
        [[1.0, 1.0, 1.0], [0.2, 0.5, nan], [0.2, 0.2, nan], [0.1, 0.3, nan]]
    )
    sd = np.array([[1.0, 1.0, 1.0], [0.2, 0.1, nan], [0.3, 0.2, nan], [0.2, 0.2, nan]])
    outcome = accuracy_fits.FitOutcome(mean, sd, (None, None, 1), (None,) * 3, 1.0)
    assert accuracy._steps_to_final(outcome, [True, True, False]) == 2.5
    assert accuracy._steps_to_final(outcome, [False, False, False]) is None


def _gaussian_target(dim=4):
    """N(mu, diag(sd^2)) on an identity bijector, moments known exactly."""
    mu = np.linspace(-1.0, 1.0, dim)
    sd = np.linspace(0.5, 1.5, dim)
    p = tfd.MultivariateNormalDiag(
        tf.constant(mu, tf.float32), tf.constant(sd, tf.float32)
    )
    return accuracy_targets.GymTarget("gauss", dim, p.log_prob, tfb.Identity(), mu, sd)


def _advi_row(arm, final, checkpoints=(1, 3, 10), step_ms=1.0):
    """An ADVI arm's row whose median curves fall from 1 to `final`."""
    curve = [[1.0, 1.0], [0.5 * (1 + final)] * 2, [final, final]]
    return dict(
        target="gauss",
        family="mean-field",
        arm=arm,
        status="fitted",
        seeds=[dict(diverged_step=None, mean_error=final, sd_log_ratio=final, khat=0.3)]
        * 2,
        checkpoints=list(checkpoints),
        curve_mean_error=curve,
        curve_sd_log_ratio=curve,
        step_ms=step_ms,
    )


@pytest.mark.slow
def test_pathfinder_rows_on_a_gaussian_target():
    # On a Gaussian target Pathfinder's one-path Gaussian is near exact after
    # about d iterations (tests/test_pathfinder.py): both errors are below
    # ADVI rows that end at 0.3, at far fewer gradient evaluations than
    # 10 steps x 80 draws, so the claim holds and ADVI reaches Pathfinder's
    # errors at no checkpoint.
    target = _gaussian_target()
    settings = dataclasses.replace(
        PRESETS["tiny"],
        accuracy_steps=10,
        accuracy_draws_per_step=80,
        accuracy_pathfinder_paths=(1, 2),
    )
    rows = [_advi_row("tfp.vi", 0.3), _advi_row("DOUBLY_REPARAMETERIZED", 0.4)]
    out = accuracy_pathfinder.pathfinder_rows(target, rows, settings)
    assert [(r["kind"], r.get("paths"), r.get("family")) for r in out] == [
        ("pathfinder", 1, None),
        ("pathfinder", 2, None),
        ("continued", None, "mean-field"),
    ]
    one = out[0]
    assert one["mean_error"] < 0.05 and one["sd_log_ratio"] < 0.05, one
    assert 0 < one["gradient_evaluations"] < 80 and one["seconds"] > 0
    assert one["claim"]["holds"] is True
    assert one["claim"]["best_mean_error_by"] == "mean-field tfp.vi"
    assert [r["steps"] for r in one["advi_to_reach"]] == [None, None]
    # From the near-exact Gaussian the fit is at tfp.vi's final errors from
    # its first step.
    continued = out[2]
    assert continued["reference_steps"] == (3, 10)
    assert continued["seeds_steps_to_reference"] == [1, 1]
    markdown = "\n".join(
        accuracy_pathfinder_tables.render_pathfinder(
            accuracy.AccuracyResult(
                10, 2, 80, 0.02, False, 20, None, (), tuple(rows), tuple(out)
            )
        )
    )
    assert "| Pathfinder, 1 path | " in markdown
    assert (
        "| ADVI mean-field, tfp.vi | 0.3 | 0.3 | 0.3 | 800 |  | 0.01 | not reached | not reached |"
        in markdown
    )
    assert "**the claim holds**" in markdown
    assert "from scratch in 4 to 10 of 10 steps: at most a quarter." in markdown


def _continued(steps, reached, reference_steps, exact=None):
    return dict(
        reference_steps_to_final=exact,
        kind="continued",
        family="mean-field",
        arm="REPARAMETERIZATION",
        reference_arm="tfp.vi",
        reference_mean_error=0.1,
        reference_sd_log_ratio=0.2,
        reference_steps=reference_steps,
        steps=2000,
        diverged_step=None,
        mean_error=0.05,
        sd_log_ratio=0.1,
        seeds_steps_to_reference=reached,
        steps_to_reference=steps,
    )


@pytest.mark.parametrize(
    "steps, reached, reference_steps, verdict",
    [
        (100, [100, 100], (500, 1000), "at most a quarter."),
        (300, [300, 300], (500, 1000), "**more than a quarter**."),
        (200, [200, 200], (500, 1000), "undecided at the checkpoints' resolution."),
        (100, [100, None], (500, 1000), "**more than a quarter**."),
        (100, [100, 100], None, "reaches them at no checkpoint."),
        # With the fit from scratch's own step count, no checkpoint interval.
        (200, [200, 200], (500, 1000), "in 800 of 2000 steps: at most a quarter."),
        (201, [201, 201], (500, 1000), "**more than a quarter**."),
    ],
)
def test_quarter_verdicts(steps, reached, reference_steps, verdict):
    exact = 800 if "800" in verdict or steps == 201 else None
    sentence = accuracy_pathfinder_tables._continued_sentence(
        _continued(steps, reached, reference_steps, exact)
    )
    assert sentence.endswith(verdict), sentence


def test_tiny_report_pathfinder_rows(tiny_report):
    out, report = tiny_report
    data = report["sections"]["accuracy"]["data"]
    rows = data["pathfinder"]
    assert [(r["kind"], r.get("paths"), r.get("family")) for r in rows] == [
        ("pathfinder", 1, None),
        ("pathfinder", 2, None),
        ("continued", None, "mean-field"),
    ]
    arms = [(r["family"], r["arm"]) for r in data["rows"]]
    for row in rows[:2]:
        assert row["target"] == "Banana" and len(row["seeds_mean_error"]) == 2
        assert np.isfinite(row["mean_error"]) and np.isfinite(row["sd_log_ratio"])
        assert row["gradient_evaluations"] > 0 and row["seconds"] > 0
        assert [(r["family"], r["arm"]) for r in row["advi_to_reach"]] == arms
        assert isinstance(row["claim"]["holds"], bool)
    assert rows[1]["ess"] > 1 and rows[0]["ess"] is None
    # Every fitted arm's steps to its own final errors: within its 3 steps
    # (None where no replicate has both errors at most both medians).
    steps = [r["steps_to_final"] for r in data["rows"]]
    assert all(s is None or 1 <= s <= 3 for s in steps), steps
    continued = rows[2]
    assert continued["reference_arm"] == "tfp.vi" and continued["steps"] == 3
    assert continued["reference_steps_to_final"] == data["rows"][0]["steps_to_final"]
    assert len(continued["seeds_steps_to_reference"]) == 2
    markdown = (out / "report.md").read_text()
    assert "**Pathfinder beside the arms**" in markdown
    assert "| Pathfinder, 2 paths | " in markdown
    assert "mean-field from Pathfinder (REPARAMETERIZATION) against tfp.vi" in markdown
