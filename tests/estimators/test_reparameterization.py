"""REPARAMETERIZATION: the closed-form ELBO gradient, in standard errors."""

import numpy as np
from stat_helpers import (
    Z_TOLERANCE,
    DecoderProblem,
    closed_form_z_scores,
    per_draw_gradients,
    variational_loss,
)

import tfp_vi_estimators as tve


def test_matches_closed_form_elbo_gradient():
    problem = DecoderProblem(40_000)
    draws = per_draw_gradients(
        variational_loss(problem, tve.GradientEstimators.REPARAMETERIZATION, 1),
        problem.variables,
    )
    z = closed_form_z_scores(problem, draws)
    assert np.all(np.abs(z) < Z_TOLERANCE), z
