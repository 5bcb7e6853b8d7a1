"""Helpers shared by the tests of `tfp_vi_estimators.distributions`.

Exposed as fixtures because test modules are imported with
`--import-mode=importlib` and cannot import one another.
"""

from __future__ import annotations

import statistics
import types

import numpy as np
import pytest
import tensorflow as tf


def bonferroni_threshold(num_comparisons: int, familywise_alpha: float) -> float:
    """Two-sided z threshold so that `num_comparisons` true nulls all pass with
    probability >= 1 - familywise_alpha (Bonferroni)."""
    tail = familywise_alpha / (2.0 * num_comparisons)
    return statistics.NormalDist().inv_cdf(1.0 - tail)


def cos_expectation(loc, scale_tril, w):
    """Closed form of E[cos(w.z)], z ~ N(loc, L L^T): cos(w.mu) exp(-|L^T w|^2/2)."""
    projected = tf.linalg.matvec(scale_tril, w, adjoint_a=True)
    return tf.cos(tf.reduce_sum(w * loc, -1)) * tf.exp(
        -0.5 * tf.reduce_sum(tf.square(projected), -1)
    )


def exact_cos_gradients(loc, scale_tril, w):
    """Autodiff of the closed form: exact gradients for loc and scale_tril."""
    loc = tf.convert_to_tensor(loc)
    scale_tril = tf.convert_to_tensor(scale_tril)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale_tril])
        value = tf.reduce_sum(cos_expectation(loc, scale_tril, w))
    grad_loc, grad_scale = tape.gradient(value, [loc, scale_tril])
    return grad_loc.numpy(), grad_scale.numpy()


def per_draw_cos_gradients(make_distribution, loc, scale_tril, w, num_draws, seed):
    """Per-draw gradients of cos(w.z), vectorized without a loop over draws.

    The parameters are broadcast to a leading batch of `num_draws` copies and
    one sample is drawn per copy, so the gradient with respect to each copy is
    the single-draw estimator for that draw. Returns arrays of shapes
    `[num_draws] + loc.shape` and `[num_draws] + scale_tril.shape`.
    """
    loc_copies = tf.broadcast_to(loc, [num_draws, *loc.shape])
    scale_copies = tf.broadcast_to(scale_tril, [num_draws, *scale_tril.shape])
    with tf.GradientTape() as tape:
        tape.watch([loc_copies, scale_copies])
        z = make_distribution(loc_copies, scale_copies).sample(seed=seed)
        value = tf.reduce_sum(tf.cos(tf.reduce_sum(w * z, -1)))
    grad_loc, grad_scale = tape.gradient(value, [loc_copies, scale_copies])
    return grad_loc.numpy(), grad_scale.numpy()


def lower_triangle_entries(matrices):
    """The lower-triangle entries (diagonal included) of `[..., d, d]` arrays."""
    d = matrices.shape[-1]
    rows, cols = np.tril_indices(d)
    return matrices[..., rows, cols]


def assert_unbiased(per_draw, exact, familywise_alpha=1e-3, label=""):
    """Per-element z-test of the mean of `per_draw` (axis 0) against `exact`.

    The standard error comes from the same draws; the threshold is the
    Bonferroni bound over the number of elements compared, so a correct
    estimator fails with probability at most `familywise_alpha`.
    """
    per_draw = np.asarray(per_draw, np.float64)
    num_draws = per_draw.shape[0]
    mean = per_draw.mean(0)
    standard_error = per_draw.std(0, ddof=1) / np.sqrt(num_draws)
    z = (mean - exact) / standard_error
    threshold = bonferroni_threshold(z.size, familywise_alpha)
    assert np.all(np.isfinite(z)), f"{label}: non-finite z-scores {z}"
    worst = np.max(np.abs(z))
    assert worst < threshold, (
        f"{label}: max |z| = {worst:.2f} >= {threshold:.2f} "
        f"(Bonferroni over {z.size} elements, familywise alpha {familywise_alpha});"
        f"\nmean={mean}\nexact={exact}\nz={z}"
    )
    return worst, threshold


@pytest.fixture
def cos_problem():
    """A batch of two 3-d Gaussian problems for f(z) = cos(w.z), float64."""
    loc = tf.constant([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.2]], tf.float64)
    scale_tril = tf.constant(
        [
            [[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.5, 0.7, 0.6]],
            [[1.2, 0.0, 0.0], [-0.3, 0.5, 0.0], [0.4, 0.9, 0.7]],
        ],
        tf.float64,
    )
    w = tf.constant([[0.8, -0.6, 1.0], [0.5, 1.1, -0.7]], tf.float64)
    return types.SimpleNamespace(loc=loc, scale_tril=scale_tril, w=w)


@pytest.fixture
def stats():
    """Statistical helpers (see the module-level functions above)."""
    return types.SimpleNamespace(
        bonferroni_threshold=bonferroni_threshold,
        cos_expectation=cos_expectation,
        exact_cos_gradients=exact_cos_gradients,
        per_draw_cos_gradients=per_draw_cos_gradients,
        lower_triangle_entries=lower_triangle_entries,
        assert_unbiased=assert_unbiased,
    )
