"""The discrete section: the RELAX toy's numbers, the tiny VAE runs, rendering.

z-tests compare a mean of independent gradients with the closed-form gradient
within `Z_TOLERANCE` standard errors of the same draws (4.5, see
`stat_helpers`).
"""

import math

import numpy as np
import pytest
from stat_helpers import Z_TOLERANCE

from tfp_vi_estimators.report import discrete, discrete_toy

ARMS = {arm.label: arm for arm in discrete_toy.TOY_ARMS}


def test_tiny_report_discrete(tiny_report):
    _, report = tiny_report
    data = report["sections"]["discrete"]["data"]
    thetas = {r["theta"] for r in data["toy"]}
    assert len(data["toy"]) == len(thetas) * len(discrete_toy.TOY_ARMS)
    for entry in data["vae"]:
        assert entry["rows"], entry["comparison"]
        for curves in entry["runs"].values():
            n = len(curves["steps"])
            assert len(curves["test_bound"]) == len(curves["variance"]) == n
            assert all(math.isfinite(v) for v in curves["test_bound"])
            # The 100-sample bound is a lower bound on log p(x) < 0.
            assert max(curves["test_bound"]) < 0.0


def test_exact_gradient_is_the_derivative_of_the_scaled_kl():
    # T KL(q || p_T) = E[(b - 0.499)^2] - T H(theta), H the Bernoulli entropy.
    def loss(a):
        theta = 1.0 / (1.0 + math.exp(-a))
        mean = theta * 0.501**2 + (1 - theta) * 0.499**2
        entropy = -theta * math.log(theta) - (1 - theta) * math.log(1 - theta)
        return mean - discrete_toy.SCALE * entropy

    for theta in (0.5, 0.9, 0.2):
        a, h = math.log(theta / (1 - theta)), 1e-5
        # Central difference: truncation O(h^2) ~ 1e-14, rounding ~ 1e-16 / h.
        numeric = (loss(a + h) - loss(a - h)) / (2 * h)
        assert discrete_toy.exact_gradient(theta) == pytest.approx(numeric, rel=1e-6)


@pytest.mark.parametrize("label", ["REINFORCE LOO", "DisARM", "ARMS S=4"])
def test_unbiased_toy_estimators_match_the_exact_gradient(label):
    row = discrete_toy.toy_row(ARMS[label], 0.9, 5000, 0, seed=3)
    assert abs(row["z"]) < Z_TOLERANCE, row


def test_arms_variance_is_below_leave_one_out_at_four_draws():
    # Same problem, same run. At theta = 1/2 the toy gives 6e-9 against 4e-8
    # (quick preset, 10,000 draws); with 5,000 draws a variance estimate's
    # relative standard error is about sqrt(2 / 5000) ~ 2% for Gaussian draws
    # (these are bounded, so no heavier), far inside the factor 2 asserted.
    arms = discrete_toy.toy_row(ARMS["ARMS S=4"], 0.5, 5000, 0, seed=4)
    loo = discrete_toy.toy_row(ARMS["REINFORCE LOO S=4"], 0.5, 5000, 0, seed=4)
    assert arms["variance"] < loo["variance"] / 2, (arms, loo)


def test_disarm_is_exact_at_one_half():
    # One unit at theta = 1/2: the antithetic pair always holds one 0 and
    # one 1, so every DisARM gradient is the exact gradient.
    row = discrete_toy.toy_row(ARMS["DisARM"], 0.5, 200, 0, seed=5)
    assert math.isnan(row["z"])
    np.testing.assert_allclose(row["mean"], row["exact"], rtol=1e-9)


def _row(arm, train, test, variance):
    return dict(
        arm=arm,
        seeds=2,
        evaluations=2,
        biased=False,
        skipped=0,
        train=(train, 0.1),
        test=(test, 0.1),
        variance=(variance, 0.01),
    )


def test_compare_and_render_directions():
    rows = [_row("DisARM", -100.0, -90.0, 0.5), _row("RELAX", -101.0, -89.0, 0.2)]
    checks = discrete.compare(rows, "DisARM", "RELAX", "linear", "Fig. 5")
    assert [(c["metric"], c["holds"]) for c in checks] == [
        ("train", True),
        ("test", False),
        ("variance", False),
    ]
    assert discrete.compare(rows, "DisARM", "VIMCO", "linear", "Fig. 6") == []
    result = discrete.DiscreteResult(
        toy_draws=10,
        toy=(),
        vae_sizes=dict(
            latents=8,
            num_train=10,
            num_test=5,
            steps=2,
            learning_rate=0.1,
            batch_size=4,
        ),
        vae=(),
        directions=tuple(checks),
    )
    text = discrete.render(result)
    assert "Fig. 5, linear, train: DisARM -100 against RELAX -101: holds" in text
    assert "variance: DisARM 0.5 against RELAX 0.2: **does not hold**" in text
    assert discrete.summarize(result)[0] == ("paper directions", "1 of 3 hold")
