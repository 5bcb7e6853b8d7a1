"""The accuracy section: arms, fits that diverge, tables and verdicts, the tiny
run, and a clear message without inference_gym."""

import dataclasses
import importlib
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators.report import (
    accuracy,
    accuracy_fits,
    accuracy_tables,
    accuracy_targets,
)
from tfp_vi_estimators.report.formatting import to_jsonable
from tfp_vi_estimators.report.settings import PRESETS

tfd = tfp.distributions
tfb = tfp.bijectors


def test_arms_table():
    labels = [arm.label for arm in accuracy_fits.ARMS]
    assert labels[0] == accuracy_fits.BASELINE and len(set(labels)) == len(labels)
    for arm in accuracy_fits.ARMS:
        options = arm.options(8)
        # Same compute: S * K target evaluations per step for every arm.
        assert options["sample_size"] * options["importance_sample_size"] == 8
        if arm.library == "ours":
            # An estimator object is made fresh for every fit (it may hold state).
            first, second = arm.options(8), arm.options(8)
            if not isinstance(first["gradient_estimator"], accuracy_fits.GE):
                assert first["gradient_estimator"] is not second["gradient_estimator"]


def test_chosen_arms_by_label():
    settings = dataclasses.replace(
        PRESETS["tiny"], accuracy_arms=("DOUBLY_REPARAMETERIZED", "tfp.vi")
    )
    assert [a.label for a in accuracy.chosen_arms(settings)] == [
        "DOUBLY_REPARAMETERIZED",
        "tfp.vi",
    ]
    with pytest.raises(ValueError, match="unknown.*'nope'"):
        accuracy.chosen_arms(dataclasses.replace(settings, accuracy_arms=("nope",)))


def test_checkpoint_steps():
    steps = accuracy.checkpoint_steps(2000, 16)
    assert steps[0] == 1 and steps[-1] == 2000 and len(steps) <= 16
    assert steps == sorted(set(steps))
    assert accuracy.checkpoint_steps(3, 3) == [1, 2, 3]


def _nan_above_three(u):
    """N(10, 1) per coordinate, but NaN once a draw exceeds 3: a fit moving q
    towards 10 must meet a NaN within its first steps."""
    log_prob = tf.reduce_sum(tfd.Normal(10.0, 1.0).log_prob(u), axis=-1)
    return tf.where(
        tf.reduce_max(u, axis=-1) > 3.0, tf.fill(tf.shape(log_prob), np.nan), log_prob
    )


def test_a_diverging_fit_is_reported_as_diverged_not_nan():
    target = accuracy_targets.GymTarget(
        "runaway", 2, _nan_above_three, tfb.Identity(), np.full(2, 10.0), np.ones(2)
    )
    settings = dataclasses.replace(
        PRESETS["tiny"], accuracy_steps=12, accuracy_seeds=2, accuracy_learning_rate=0.5
    )
    arms = [accuracy_fits.ARMS[0], accuracy_fits.ARMS[2]]  # tfp.vi, ours
    rows = accuracy.family_rows(target, "mean-field", arms, settings, seed=(0, 1))
    for row in rows:
        steps = [s["diverged_step"] for s in row["seeds"]]
        assert all(isinstance(step, int) and 0 <= step < 12 for step in steps), row
        assert all(s["mean_error"] is None and s["khat"] is None for s in row["seeds"])
    # Ours stopped with NonFiniteLossError and refitted each replicate alone;
    # tfp.vi went on, and its replicates diverged at their first NaN loss.
    assert [row["one_by_one"] for row in rows] == [False, True]
    result = accuracy.AccuracyResult(
        12,
        2,
        8,
        0.5,
        False,
        20,
        None,
        (dict(name="runaway", dim=2, truth_noise=None),),
        tuple(rows),
    )
    markdown = accuracy_tables.render(result)
    assert "diverged at step" in markdown and "nan" not in markdown.lower()
    json.dumps(to_jsonable(result), allow_nan=False)  # no NaN in the JSON either


def _row(arm, errors, diverged=None, family="mean-field", target="t"):
    diverged = diverged or [None] * len(errors)
    return dict(
        target=target,
        family=family,
        arm=arm,
        status="fitted",
        one_by_one=False,
        seeds=[
            dict(diverged_step=d, mean_error=e, sd_log_ratio=e, khat=0.6)
            for e, d in zip(errors, diverged, strict=True)
        ],
        checkpoints=[1, 10],
        curve_mean_error=[[1.0] * len(errors), [e or 1.0 for e in errors]],
        curve_sd_log_ratio=[[1.0] * len(errors), [e or 1.0 for e in errors]],
        equal_time_steps=10,
        equal_time_mean_error=errors,
        equal_time_sd_log_ratio=errors,
        fit_seconds=3.0,
        step_ms=2.0,
        compile_seconds=1.0,
    )


def _result():
    rows = (
        _row("tfp.vi", [0.2, 0.3, 0.4]),
        _row("DOUBLY_REPARAMETERIZED", [0.5, 0.6, 0.1]),  # worse on 2 of 3
        _row("score_weight=0.5", [0.1, None, 0.3], diverged=[None, 7, None]),
        dict(
            target="t",
            family="mean-field",
            arm="rqmc",
            status="refused",
            message="No. Really.",
        ),
    )
    return accuracy.AccuracyResult(
        10,
        3,
        8,
        0.02,
        True,
        100,
        None,
        (dict(name="t", dim=2, truth_noise=0.01),),
        rows,
    )


def test_cells_verdicts_and_best_arm():
    assert accuracy_tables.paired_wins([0.1, None, 0.3], [0.2, 0.3, 0.4]) == (2, 2)
    assert accuracy_tables.metric_cell([0.2, 0.3, 0.4], []) == "0.3 (0.2-0.4)"
    assert (
        accuracy_tables.metric_cell([0.1, None, 0.3], [7], [0.2, 0.3, 0.4])
        == "0.2 (2/2; 1 diverged at step 7)"
    )
    assert accuracy_tables.metric_cell([None, None], [4, 9]) == "diverged at step 4, 9"
    rows = _result().rows
    groups = {r["arm"]: r for r in rows}
    # score_weight=0.5 has the smallest median but a diverged replicate.
    assert accuracy_tables.best_arm(groups) == ("tfp.vi", 0.3)
    assert accuracy_tables.losses(rows) == [
        ("t", "mean-field", "DOUBLY_REPARAMETERIZED", 0.5, 0.3, 1, 3)
    ]


def test_render_summarize_and_plot(tmp_path):
    markdown = accuracy_tables.render(_result())
    assert (
        "| target | family | tfp.vi | DOUBLY_REPARAMETERIZED | score_weight=0.5 | rqmc | best |"
        in markdown
    )
    assert (
        "| t | mean-field | 0.3 (0.2-0.4) | 0.5 (1/3) | 0.2 (2/2; 1 diverged at step 7) | refused | tfp.vi (0.3) |"
        in markdown
    )
    assert (
        "- t, mean-field: **DOUBLY_REPARAMETERIZED** (0.5 against 0.3, better on 1/3 seeds)"
        in markdown
    )
    assert "**rqmc** refused (1 fits): No." in markdown
    assert "@10" in markdown  # the equal-time step count
    assert accuracy_tables.summarize(_result()) == [
        ("best arm (mean error)", "tfp.vi 1"),
        ("ours losing to tfp.vi", "1 arm-target-family cells of 3 (equal steps)"),
    ]
    accuracy_tables.plot(_result(), tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_without_inference_gym_the_section_says_how_to_install_it(monkeypatch):
    real_import = importlib.import_module

    def no_gym(name, *args):
        if name.startswith("inference_gym"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_gym)
    result = accuracy.compute(PRESETS["tiny"])
    assert (
        result.rows == ()
        and "pip install 'tfp_vi_estimators[report]'" in result.skipped
    )
    assert accuracy_tables.render(result).startswith("**Skipped.**")
    assert accuracy_tables.summarize(result)[0][0] == "skipped"
    with pytest.raises(accuracy_targets.MissingInferenceGym, match="inference_gym"):
        accuracy_targets.load_target("Banana")


def test_load_target():
    target = accuracy_targets.load_target("EightSchools")
    assert target.dim == 10 and target.true_mean.shape == (10,)
    assert 0 < target.truth_noise() < 0.01  # long NUTS runs
    log_prob = target.log_prob_fn(tf.zeros([4, 3, 10]))
    assert log_prob.shape == (4, 3) and np.all(np.isfinite(log_prob))
    with pytest.raises(ValueError, match="not an inference_gym target"):
        accuracy_targets.load_target("NoSuchModel")


def test_tiny_report_section(tiny_report):
    out, report = tiny_report
    section = report["sections"]["accuracy"]
    assert section["status"] == "ok" and section["plots"] == ["accuracy.png"]
    assert (out / "accuracy.png").stat().st_size > 1000
    rows = section["data"]["rows"]
    assert [(r["target"], r["family"], r["arm"]) for r in rows] == [
        ("Banana", "mean-field", "tfp.vi"),
        ("Banana", "mean-field", "DOUBLY_REPARAMETERIZED"),
        ("Banana", "mean-field", "adaptive"),
    ]
    assert all(r["status"] == "fitted" and len(r["seeds"]) == 2 for r in rows)
    assert all(r["step_ms"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["full-rank", "affine"])
def test_rqmc_is_fitted_where_one_surrogate_is_served(family):
    # RQMC serves a MultivariateNormalTriL and a transformed standard normal;
    # where the library refuses the batch of replicates but accepts one
    # surrogate (a batched MultivariateNormalTriL, the affine builder's
    # BatchBroadcast base), each replicate is fitted alone, without a step
    # time, never refused.
    settings = dataclasses.replace(PRESETS["tiny"], accuracy_seeds=2)
    target = accuracy_targets.load_target("Banana")
    arm = next(a for a in accuracy_fits.ARMS if a.sampling == "rqmc")
    (row,) = accuracy.family_rows(target, family, [arm], settings, seed=(0, 2))
    assert row["status"] == "fitted" and len(row["seeds"]) == 2
    assert all(s["mean_error"] is not None for s in row["seeds"])
    assert row["unbatched"] == (row["step_ms"] is None)


def test_fit_seed_does_not_depend_on_the_other_targets_chosen():
    # EightSchools is second of TARGET_NAMES and mean-field first of FAMILIES.
    assert accuracy.fit_seed(3, "EightSchools", "mean-field") == (3, 100)
    assert accuracy.fit_seed(0, "Banana", "affine") == (0, 2)
    other = accuracy.fit_seed(0, "runaway", "full-rank")
    assert other == accuracy.fit_seed(0, "runaway", "full-rank") and other[1] % 100 == 1


@pytest.mark.slow
def test_several_targets_are_fitted_in_child_processes():
    settings = dataclasses.replace(
        PRESETS["tiny"], accuracy_targets=("Banana", "NoSuchModel")
    )
    result = accuracy.compute(settings)
    assert [t["name"] for t in result.targets] == ["Banana", "NoSuchModel"]
    assert "not an inference_gym target" in result.targets[1]["error"]
    assert {(r["target"], r["arm"]) for r in result.rows} == {
        ("Banana", "tfp.vi"),
        ("Banana", "DOUBLY_REPARAMETERIZED"),
        ("Banana", "adaptive"),
    }
    # Pathfinder's rows come back from the child process too.
    assert [(r["target"], r["kind"], r.get("paths")) for r in result.pathfinder] == [
        ("Banana", "pathfinder", 1),
        ("Banana", "pathfinder", 2),
        ("Banana", "continued", None),
    ]
