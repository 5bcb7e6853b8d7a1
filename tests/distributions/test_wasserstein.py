"""Tests of the closed-form squared Wasserstein-2 distance."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter

from tfp_vi_estimators.distributions import (
    AVFMultivariateNormal,
    OMTMultivariateNormal,
    wasserstein2_squared,
)

tfd = tfp.distributions


def _sqrtm_psd(matrix):
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (
        eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))[..., None, :]
    ) @ np.swapaxes(eigenvectors, -1, -2)


def _reference(m1, s1, m2, s2):
    """W2^2 by the textbook formula with eigh square roots (NumPy, float64)."""
    root1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(root1 @ s2 @ root1)
    trace = np.trace(s1 + s2 - 2 * cross, axis1=-2, axis2=-1)
    return np.sum((m1 - m2) ** 2, -1) + trace


def _random_tril(rng, batch, d):
    scale = np.tril(rng.normal(size=(*batch, d, d)))
    idx = np.arange(d)
    scale[..., idx, idx] = rng.uniform(0.3, 1.5, size=(*batch, d))
    return scale


def test_matches_textbook_formula_on_random_full_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    l1, l2 = _random_tril(rng, [5], 4), _random_tril(rng, [5], 4)
    got = wasserstein2_squared(
        tfd.MultivariateNormalTriL(m1, l1), tfd.MultivariateNormalTriL(m2, l2)
    )
    expected = _reference(
        m1, l1 @ np.swapaxes(l1, -1, -2), m2, l2 @ np.swapaxes(l2, -1, -2)
    )
    assert got.shape == [5]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_batches_broadcast():
    rng = np.random.default_rng(1)
    a = tfd.MultivariateNormalTriL(
        rng.normal(size=(3, 1, 2)), _random_tril(rng, [3, 1], 2)
    )
    b = tfd.MultivariateNormalTriL(rng.normal(size=(4, 2)), _random_tril(rng, [4], 2))
    got = wasserstein2_squared(a, b)
    assert got.shape == [3, 4]
    s_a, s_b = a.covariance().numpy(), b.covariance().numpy()
    np.testing.assert_allclose(
        got, _reference(a.mean().numpy(), s_a, b.mean().numpy(), s_b), rtol=1e-9
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_for_identical_inputs(dtype):
    rng = np.random.default_rng(2)
    loc, scale = (
        rng.normal(size=(3, 4)).astype(dtype),
        _random_tril(rng, [3], 4).astype(dtype),
    )
    full = wasserstein2_squared(
        tfd.MultivariateNormalTriL(loc, scale), tfd.MultivariateNormalTriL(loc, scale)
    )
    diag = wasserstein2_squared(
        tfd.MultivariateNormalDiag(loc, np.diagonal(scale, axis1=-2, axis2=-1)),
        tfd.MultivariateNormalDiag(loc, np.diagonal(scale, axis1=-2, axis2=-1)),
    )
    # First-order round-off bound: eigh has backward error ~ eps ||M||, which
    # moves sqrt(lambda) by up to eps ||M|| / (2 sqrt(lambda_min)) per eigenvalue
    # (d of them, factor 2 in W2), plus the cancellation of the traces.
    cov = scale.astype(np.float64) @ np.swapaxes(scale, -1, -2)
    eigenvalues = np.linalg.eigvalsh(np.swapaxes(scale, -1, -2) @ cov @ scale)
    eps = np.finfo(dtype).eps
    bound = eps * (
        4 * eigenvalues[..., -1] / np.sqrt(eigenvalues[..., 0])
        + 2 * np.trace(cov, axis1=-2, axis2=-1)
    )
    assert np.all(full.numpy() <= bound), (full, bound)
    assert np.all(full.numpy() >= 0)
    np.testing.assert_array_equal(diag, 0.0)


def test_diagonal_path_agrees_with_full_path():
    rng = np.random.default_rng(3)
    m1, m2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    d1, d2 = rng.uniform(0.2, 2.0, size=(2, 3)), -rng.uniform(0.2, 2.0, size=(2, 3))
    diagonal = wasserstein2_squared(
        tfd.MultivariateNormalDiag(m1, d1), tfd.MultivariateNormalDiag(m2, d2)
    )
    full = wasserstein2_squared(
        tfd.MultivariateNormalTriL(m1, np.apply_along_axis(np.diag, -1, d1)),
        tfd.MultivariateNormalTriL(m2, np.apply_along_axis(np.diag, -1, d2)),
    )
    mixed = wasserstein2_squared(
        tfd.MultivariateNormalDiag(m1, d1),
        tfd.MultivariateNormalTriL(m2, np.apply_along_axis(np.diag, -1, d2)),
    )
    np.testing.assert_allclose(diagonal, full, rtol=1e-10)
    np.testing.assert_allclose(mixed, full, rtol=1e-10)


def _scipy_reference(m1, s1, m2, s2):
    """W2^2 by Givens & Shortt's formula with scipy.linalg.sqrtm (float64).

    Independent of `_reference` and of the code under test: Schur-based matrix
    square roots instead of eigendecompositions, on covariances built in NumPy.
    """
    root1 = scipy.linalg.sqrtm(s1)
    cross = scipy.linalg.sqrtm(root1 @ s2 @ root1)
    trace = np.trace(s1) + np.trace(s2) - 2.0 * np.trace(cross).real
    return np.sum((m1 - m2) ** 2) + trace


def test_accepts_omt_avf_and_full_covariance_normals():
    rng = np.random.default_rng(4)
    loc, scale = rng.normal(size=3), _random_tril(rng, [], 3)
    covariance = scale @ scale.T
    reference_covariance = scale.T @ scale + np.eye(3)
    reference = tfd.MultivariateNormalTriL(
        loc + 1.0, np.linalg.cholesky(reference_covariance)
    )
    expected = _scipy_reference(loc, covariance, loc + 1.0, reference_covariance)
    others = {
        "OMT": OMTMultivariateNormal(loc, scale),
        "AVF": AVFMultivariateNormal(loc, scale, np.zeros([2, 1, 3])),
        "FullCovariance": tfd.MultivariateNormalFullCovariance(loc, covariance),
    }
    for label, other in others.items():
        np.testing.assert_allclose(
            wasserstein2_squared(other, reference), expected, rtol=1e-9, err_msg=label
        )
        np.testing.assert_allclose(
            wasserstein2_squared(reference, other), expected, rtol=1e-9, err_msg=label
        )


def _central_differences(fn, params, step=1e-6):
    gradients = []
    for index, param in enumerate(params):
        grad = np.zeros_like(param)
        for position in np.ndindex(param.shape):
            shifted = [p.copy() for p in params]
            shifted[index][position] += step
            plus = fn(*shifted)
            shifted[index][position] -= 2 * step
            minus = fn(*shifted)
            grad[position] = (plus - minus) / (2 * step)
        gradients.append(grad)
    return gradients


@pytest.mark.parametrize("kind", ["full", "diagonal", "isotropic"])
def test_gradient_matches_central_finite_differences(kind):
    rng = np.random.default_rng(5)
    if kind == "full":
        scales = [_random_tril(rng, [], 3), _random_tril(rng, [], 3)]
        build = tfd.MultivariateNormalTriL
    elif kind == "diagonal":
        scales = [rng.uniform(0.3, 1.5, size=3), rng.uniform(0.3, 1.5, size=3)]
        build = tfd.MultivariateNormalDiag
    else:  # repeated eigenvalues: gradients must stay exact, not NaN.
        scales = [np.eye(3), 2.0 * np.eye(3)]
        build = tfd.MultivariateNormalTriL
    params = [rng.normal(size=3), scales[0], rng.normal(size=3), scales[1]]

    def value(m1, s1, m2, s2):
        return wasserstein2_squared(build(m1, s1), build(m2, s2))

    tensors = [tf.constant(p) for p in params]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        result = value(*tensors)
    autodiff = tape.gradient(result, tensors)
    numeric = _central_differences(lambda *p: value(*p).numpy(), params)
    for ours, theirs, param in zip(autodiff, numeric, params, strict=True):
        # MultivariateNormalTriL reads only the lower triangle of its scale.
        mask = np.tril(np.ones_like(param)) if param.ndim == 2 else 1.0
        np.testing.assert_allclose(
            np.asarray(ours) * mask, theirs * mask, rtol=1e-6, atol=1e-7
        )


def test_gradient_is_zero_and_finite_at_identical_inputs():
    loc, scale = tf.constant([0.5, -0.2]), tf.constant([[1.0, 0.0], [0.3, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        value = wasserstein2_squared(
            tfd.MultivariateNormalTriL(loc, scale),
            tfd.MultivariateNormalTriL(loc, scale),
        )
    for grad in tape.gradient(value, [loc, scale]):
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, 0.0, atol=1e-4)


def test_works_under_xla():
    rng = np.random.default_rng(6)
    a = tfd.MultivariateNormalTriL(rng.normal(size=3), _random_tril(rng, [], 3))
    b = tfd.MultivariateNormalTriL(rng.normal(size=3), _random_tril(rng, [], 3))
    compiled = tf.function(wasserstein2_squared, jit_compile=True)
    np.testing.assert_allclose(compiled(a, b), wasserstein2_squared(a, b), rtol=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (
            tfd.Normal(0.0, 1.0),
            tfd.MultivariateNormalDiag([0.0]),
            TypeError,
            "`a` must be a multivariate normal",
        ),
        (
            tfd.MultivariateNormalDiag([0.0]),
            "normal",
            TypeError,
            "`b` must be a multivariate normal.*got str",
        ),
        (
            tfd.MultivariateNormalDiag([0.0]),
            tfd.MultivariateNormalDiag(np.zeros(1)),
            TypeError,
            "a.dtype=float32, b.dtype=float64",
        ),
        (
            tfd.MultivariateNormalDiag([0.0, 1.0]),
            tfd.MultivariateNormalDiag([0.0]),
            ValueError,
            "same event size",
        ),
    ],
)
@mode_parameter
def test_rejects_bad_arguments(a, b, error, match, mode):
    assert_raises(mode, lambda: wasserstein2_squared(a, b), error, match)
