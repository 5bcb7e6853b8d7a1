"""VIMCO: unbiased, and lower variance than the plain score function.

Tolerances in standard errors (see stat_helpers); the reference is the
total-derivative gradient on independent draws.
"""

import numpy as np
import pytest
from stat_helpers import (
    Z_TOLERANCE,
    DecoderProblem,
    per_draw_gradients,
    two_sample_z_scores,
    variational_loss,
)

import tfp_vi_estimators as tve

GE = tve.GradientEstimators
NUM_DRAWS = 40_000


@pytest.mark.parametrize("discrepancy", ["kl_reverse", "kl_forward"])
def test_unbiased_against_total_derivative(discrepancy):
    f = getattr(tve, discrepancy)
    problem = DecoderProblem(NUM_DRAWS)
    ours = per_draw_gradients(
        variational_loss(problem, GE.VIMCO, 4, f), problem.variables
    )
    reference = per_draw_gradients(
        variational_loss(problem, GE.REPARAMETERIZATION, 4, f, seed=(4, 4)),
        problem.variables,
    )
    z = two_sample_z_scores(ours, reference)
    assert np.all(np.abs(z) < Z_TOLERANCE), z


def test_lower_variance_than_score_function():
    problem = DecoderProblem(NUM_DRAWS)
    phi = problem.variables[:2]
    vimco = per_draw_gradients(variational_loss(problem, GE.VIMCO, 8), phi)
    score = per_draw_gradients(variational_loss(problem, GE.SCORE_FUNCTION, 8), phi)
    assert all(v.var() < s.var() for v, s in zip(vimco, score, strict=True))
