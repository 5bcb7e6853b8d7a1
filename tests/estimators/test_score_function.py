"""SCORE_FUNCTION: unbiased, including importance_sample_size > 1 (tfp.vi refuses).

Tolerances in standard errors from the same draws (see stat_helpers). The
references are the closed-form ELBO gradient (K = 1) and the total-derivative
gradient (REPARAMETERIZATION), a different principle, on independent draws.
"""

import numpy as np
import pytest
from stat_helpers import (
    Z_TOLERANCE,
    DecoderProblem,
    closed_form_z_scores,
    per_draw_gradients,
    two_sample_z_scores,
    variational_loss,
)

import tfp_vi_estimators as tve

GE = tve.GradientEstimators
NUM_DRAWS = 40_000


def test_matches_closed_form_elbo_gradient():
    problem = DecoderProblem(NUM_DRAWS)
    draws = per_draw_gradients(
        variational_loss(problem, GE.SCORE_FUNCTION, 1), problem.variables
    )
    z = closed_form_z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


@pytest.mark.parametrize("discrepancy", ["kl_reverse", "kl_forward"])
@pytest.mark.parametrize("k", [1, 4])
def test_unbiased_against_total_derivative(k, discrepancy):
    f = getattr(tve, discrepancy)
    problem = DecoderProblem(NUM_DRAWS)
    ours = per_draw_gradients(
        variational_loss(problem, GE.SCORE_FUNCTION, k, f), problem.variables
    )
    reference = per_draw_gradients(
        variational_loss(problem, GE.REPARAMETERIZATION, k, f, seed=(4, 4)),
        problem.variables,
    )
    z = two_sample_z_scores(ours, reference)
    assert np.all(np.abs(z) < Z_TOLERANCE), z
