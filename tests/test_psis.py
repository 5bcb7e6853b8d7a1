"""PSIS: agreement with ArviZ, k-hat's verdicts, corrected posterior expectations.

Statistical checks use `Z_TOLERANCE` standard errors (see `stat_helpers`:
P(|Z| > 4.5) ~ 7e-6 per comparison), each computed from the same draws as the
mean it qualifies.
"""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st
from modes import assert_raises, mode_parameter
from stat_helpers import Z_TOLERANCE

from tfp_vi_estimators import psis

tfd = tfp.distributions


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ announces its refactor on import
        return pytest.importorskip(
            "arviz", reason="ArviZ (the reference PSIS) is a test extra"
        )


def _log_weights(tail, seed, shape):
    """Log importance ratios with a heavy (k ~ 1), medium (k ~ 1/3) or light tail."""
    rng = np.random.default_rng(seed)
    if tail == "light":
        return rng.normal(size=shape)
    df = {"heavy": 1.0, "medium": 3.0}[tail]
    # |t_df| has a Pareto tail of index df: k = 1 / df.
    return np.log(np.abs(rng.standard_t(df, size=shape))) + 50.0


# ---------------------------------------------------------------- psis_smooth


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tail", ["heavy", "medium", "light"])
@pytest.mark.parametrize("num_draws", [100, 1000, 4000])
def test_smoothing_and_khat_equal_arviz_in_float64(seed, tail, num_draws):
    az = _arviz()
    log_weights = _log_weights(tail, seed, (2, 3, num_draws))
    expected_log_weights, expected_k = az.psislw(log_weights.copy())
    # Draws on a middle axis: the batch dimensions are on both sides.
    smoothed, pareto_k = psis.psis_smooth(np.moveaxis(log_weights, -1, 1), axis=1)
    assert pareto_k.shape == (2, 3)
    np.testing.assert_allclose(pareto_k, expected_k, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        np.moveaxis(smoothed.numpy(), 1, -1), expected_log_weights, rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("tail", ["heavy", "medium", "light"])
def test_float32_agrees_with_arviz_to_float32_precision(tail):
    az = _arviz()
    log_weights = _log_weights(tail, 7, (4, 1000))
    expected_log_weights, expected_k = az.psislw(log_weights.copy())
    smoothed, pareto_k = psis.psis_smooth(log_weights.astype(np.float32), axis=-1)
    assert smoothed.dtype == tf.float32
    # Measured differences are ~1e-5: float32 rounding of the tail exceedances.
    np.testing.assert_allclose(pareto_k, expected_k, rtol=0, atol=1e-4)
    np.testing.assert_allclose(smoothed, expected_log_weights, rtol=0, atol=1e-4)


def test_too_short_a_tail_gives_infinite_k_and_no_smoothing_as_arviz():
    az = _arviz()
    log_weights = _log_weights("heavy", 3, (2, 20))  # tail ceil(0.2 * 20) = 4 < 5
    expected_log_weights, expected_k = az.psislw(log_weights.copy())
    smoothed, pareto_k = psis.psis_smooth(log_weights, axis=-1)
    np.testing.assert_array_equal(pareto_k, expected_k)
    assert np.all(np.isinf(pareto_k))
    np.testing.assert_allclose(smoothed, expected_log_weights, atol=1e-12)


def test_smooths_only_the_tail_and_normalizes():
    num_draws = 1000
    tail = int(np.ceil(min(0.2 * num_draws, 3 * np.sqrt(num_draws))))
    log_weights = _log_weights("heavy", 4, (num_draws,))
    smoothed, _ = psis.psis_smooth(log_weights)
    np.testing.assert_allclose(tf.reduce_logsumexp(smoothed), 0.0, atol=1e-12)
    shift = log_weights - smoothed.numpy()  # the normalizing constant off the tail
    largest = np.argsort(log_weights)[-tail:]
    body = np.setdiff1d(np.arange(num_draws), largest)
    np.testing.assert_allclose(shift[body], shift[body[0]], atol=1e-12)
    assert not np.allclose(shift[largest], shift[body[0]])
    # No smoothed weight exceeds the largest raw weight.
    assert smoothed.numpy().max() <= (log_weights - shift[body[0]]).max() + 1e-12


def test_equal_log_weights_give_minus_infinity():
    # The documented deviation from ArviZ (which says inf): no tail at all.
    smoothed, pareto_k = psis.psis_smooth(tf.fill([50, 2], 3.0))
    np.testing.assert_array_equal(pareto_k, [-np.inf, -np.inf])
    np.testing.assert_allclose(smoothed, np.full([50, 2], -np.log(50.0)), rtol=1e-6)


def test_eager_graph_and_xla_give_the_same_values():
    log_weights = tf.constant(_log_weights("medium", 5, (3, 500)), tf.float32)
    eager = psis.psis_smooth(log_weights, axis=-1)
    graph = tf.function(lambda x: psis.psis_smooth(x, axis=-1), autograph=False)(
        log_weights
    )
    xla = tf.function(lambda x: psis.psis_smooth(x, axis=-1), jit_compile=True)(
        log_weights
    )
    for other in (graph, xla):
        np.testing.assert_allclose(other[0], eager[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(other[1], eager[1], rtol=0, atol=1e-5)


def _with(value, index, row=None):
    """`[2, 10]` log-weights, `value` at `[row or 0, index]`."""
    log_weights = np.linspace(-1.0, 1.0, 20).reshape(2, 10)
    log_weights[row or 0, index] = value
    return log_weights


_ALL_MINUS_INF_ROW = np.where(np.arange(20).reshape(2, 10) < 10, -np.inf, 0.0)


@mode_parameter
@pytest.mark.parametrize(
    "log_weights, axis, error, match",
    [
        (np.zeros([10], np.int32), 0, TypeError, "`log_weights` must be a floating"),
        (np.zeros([10], np.complex64), 0, TypeError, "`log_weights` must be a float"),
        (["a", "b"], 0, TypeError, "`log_weights` must be a floating"),
        (None, 0, TypeError, "`log_weights` must be a floating"),
        ({"a": np.zeros(3)}, 0, TypeError, "`log_weights` must be a floating"),
        (np.zeros([10]), 1, ValueError, "`axis` must index"),
        (np.zeros([10]), 0.0, TypeError, "`axis` must be a Python integer"),
        (np.zeros([10]), True, TypeError, "`axis` must be a Python integer"),
        (np.float32(1.0), 0, ValueError, "`axis` must index"),
        (np.zeros([1, 3]), 0, ValueError, "at least 2 along `axis`"),
        (np.zeros([0]), 0, ValueError, "at least 2 along `axis`"),
        (_with(np.nan, 3), -1, ValueError, "`log_weights` must be finite.*1 NaN"),
        (_with(np.inf, 9), -1, ValueError, "`log_weights` must be finite.*1 \\+inf"),
        (_ALL_MINUS_INF_ROW, -1, ValueError, "1 batch members all -inf"),
    ],
)
def test_bad_log_weights_or_axis_name_the_argument(
    mode, log_weights, axis, error, match
):
    given = None if log_weights is None else np.array(log_weights, copy=True)
    assert_raises(mode, lambda: psis.psis_smooth(log_weights, axis), error, match)
    if given is not None:
        np.testing.assert_array_equal(log_weights, given)  # not mutated


def test_bad_name_is_refused():
    with pytest.raises(TypeError, match="`name` must be None or a str"):
        psis.psis_smooth(np.zeros(10), name=3)


def test_minus_infinity_is_a_zero_weight_and_input_is_not_mutated():
    log_weights = _log_weights("medium", 8, (2, 200))
    log_weights[:, :7] = -np.inf
    given = log_weights.copy()
    smoothed, pareto_k = psis.psis_smooth(log_weights, axis=-1)
    np.testing.assert_array_equal(log_weights, given)
    np.testing.assert_array_equal(smoothed[:, :7], -np.inf)
    np.testing.assert_allclose(np.exp(smoothed).sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.isfinite(pareto_k))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_traced_bad_rows_get_nan_and_the_others_their_eager_values(jit_compile):
    # Inside a tf.function the values are unknown at trace time: a row with
    # NaN, +inf or only -inf gets k-hat NaN and NaN weights; the rest as eagerly.
    good = _log_weights("medium", 9, (100,))
    rows = np.stack([good, good, good, good])
    rows[1, 5], rows[2, 7], rows[3] = np.nan, np.inf, -np.inf
    smooth = tf.function(
        lambda x: psis.psis_smooth(x, axis=-1),
        input_signature=[tf.TensorSpec([4, 100], tf.float64)],
        jit_compile=jit_compile,
    )
    smoothed, pareto_k = smooth(rows)
    assert np.all(np.isnan(pareto_k[1:])) and np.all(np.isnan(smoothed[1:]))
    eager_smoothed, eager_k = psis.psis_smooth(good)
    np.testing.assert_allclose(smoothed[0], eager_smoothed, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pareto_k[0], eager_k, rtol=0, atol=1e-10)
    assert psis.khat_verdict(float(pareto_k[1]), 100) == "bad"


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_is_smoothed_in_float32_and_returned_as_given(dtype):
    log_weights = tf.constant(_log_weights("medium", 10, (1000,)) - 50.0, dtype)
    smoothed, pareto_k = psis.psis_smooth(log_weights)
    assert smoothed.dtype == pareto_k.dtype == dtype
    expected, expected_k = psis.psis_smooth(tf.cast(log_weights, tf.float32))
    # The float32 result of the same (16-bit) input, rounded once to the
    # 16-bit dtype: a relative error of at most one ulp, 2^-(mantissa bits).
    resolution = 2.0 ** -(10 if dtype == tf.float16 else 7)
    for value, reference in ((smoothed, expected), (pareto_k, expected_k)):
        np.testing.assert_allclose(
            tf.cast(value, tf.float32), reference, rtol=resolution, atol=0
        )


# Property: for any finite log-weights, the smoothed weights are finite,
# normalised and in the order of the raw weights. Random arrays of up to 2000
# draws span every tail length and shape fit; explicit short lists reach the
# tiny sizes and the extremes of each dtype; rounding to a few levels makes
# ties, including ties across the tail's cutoff.
@st.composite
def _finite_log_weights(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if draw(st.booleans()):
        width = 32 if dtype is np.float32 else 64
        floats = st.floats(allow_nan=False, allow_infinity=False, width=width)
        return np.asarray(draw(st.lists(floats, min_size=2, max_size=12)), dtype)
    size = draw(st.integers(2, 2000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = draw(st.sampled_from(["normal", "heavy", "uniform"]))
    x = {
        "normal": lambda: rng.normal(size=size),
        "heavy": lambda: np.log(np.abs(rng.standard_t(1.0, size=size))),
        "uniform": lambda: rng.uniform(-1.0, 1.0, size=size),
    }[x]()
    levels = draw(st.sampled_from([0, 1, 2, 5]))  # 0: no rounding
    if levels:
        x = np.round(x / np.abs(x).max() * levels)
    # Dynamic ranges from 1e-3 to 1e37 (float32) or 1e300 (float64).
    exponent = draw(st.integers(-3, 37 if dtype is np.float32 else 300))
    return (x / max(np.abs(x).max(), 1.0) * 10.0**exponent).astype(dtype)


@settings(max_examples=40, deadline=None)
@given(log_weights=_finite_log_weights())
def test_smoothed_weights_are_finite_normalised_and_order_preserving(log_weights):
    smoothed, pareto_k = psis.psis_smooth(log_weights)
    smoothed = smoothed.numpy()
    assert smoothed.dtype == log_weights.dtype and not np.isnan(pareto_k)
    weights = np.exp(smoothed)  # in the dtype, as a caller would
    assert np.all(np.isfinite(weights))
    # Each weight exp(l_i - lse) carries a relative error of eps (exp) plus
    # eps |l_i - lse| (the subtraction), and w |log w| <= 1/e, so the S
    # weights add at most S eps (1 + 1/e); the logsumexp's sum of S terms
    # moves every weight by at most S eps more. Bound: (2 S + 4) eps (the sum
    # itself is taken in float64).
    tolerance = (2 * log_weights.size + 4) * np.finfo(log_weights.dtype).eps
    assert abs(weights.astype(np.float64).sum() - 1.0) <= tolerance
    # Grouped by equal raw values (ties may be smoothed to different values),
    # every smoothed weight of a larger raw value is at least every one of a
    # smaller raw value.
    order = np.argsort(log_weights, kind="stable")
    raw, sorted_smoothed = log_weights[order], smoothed[order]
    starts = np.flatnonzero(np.r_[True, raw[1:] != raw[:-1]])
    smallest = np.minimum.reduceat(sorted_smoothed, starts)
    largest = np.maximum.reduceat(sorted_smoothed, starts)
    assert np.all(smallest[1:] >= largest[:-1])


def test_unknown_number_of_draws_is_refused_at_trace_time():
    smooth = tf.function(
        psis.psis_smooth, input_signature=[tf.TensorSpec([None], tf.float32)]
    )
    with pytest.raises(ValueError, match="statically known size"):
        smooth.get_concrete_function()


# ---------------------------------------------------------- k-hat of surrogates

_DIM = 5
_TARGET = tfd.MultivariateNormalTriL(tf.zeros(_DIM), tf.eye(_DIM))


def _isotropic_surrogates(scale, batch=4):
    """`batch` independent copies of N(0, scale^2 I): one k-hat each."""
    return tfd.MultivariateNormalDiag(tf.zeros([batch, _DIM]), tf.fill([_DIM], scale))


def test_surrogate_equal_to_the_target_has_khat_below_one_half():
    # Another class of the same density: the log-weights are all equal.
    pareto_k = psis.psis_diagnostic(
        _TARGET.log_prob, _isotropic_surrogates(1.0), num_draws=1000, seed=(1, 2)
    )
    assert np.all(pareto_k.numpy() < 0.5), pareto_k


def test_wider_surrogate_has_khat_below_one_half():
    # A wider Gaussian bounds p/q: the true shape is negative.
    pareto_k = psis.psis_diagnostic(
        _TARGET.log_prob, _isotropic_surrogates(1.2), num_draws=1000, seed=(1, 3)
    )
    assert np.all(pareto_k.numpy() < 0.5), pareto_k


def test_much_too_narrow_surrogate_has_khat_above_0_7():
    # For q = N(0, s^2) against p = N(0, 1), p/q has a Pareto tail with
    # k = 1 - s^2 = 0.91 at s = 0.3, far above 0.7 (k-hat overshoots it in 5-d).
    pareto_k = psis.psis_diagnostic(
        _TARGET.log_prob, _isotropic_surrogates(0.3), num_draws=1000, seed=(1, 4)
    )
    assert np.all(pareto_k.numpy() > 0.7), pareto_k


def test_psis_draws_in_a_graph_equal_eager():
    surrogate = _isotropic_surrogates(0.8, batch=2)
    eager = psis.psis_draws(_TARGET.log_prob, surrogate, num_draws=500, seed=(5, 6))
    graph = tf.function(
        lambda: psis.psis_draws(_TARGET.log_prob, surrogate, 500, seed=(5, 6)),
        autograph=False,
    )()
    for e, g in zip(tf.nest.flatten(eager), tf.nest.flatten(graph), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


# ------------------------------------------- a conjugate model: corrected means

# mu ~ N(0, 1), y_i | mu ~ N(mu, 1), i = 1..4, mean(y) = 1: the posterior is
# N(4/5, 1/5).
_Y = tf.constant([0.5, 1.5, 0.25, 1.75])
_POSTERIOR_MEAN, _POSTERIOR_VARIANCE = 0.8, 0.2
_REPLICATES = 200


def _conjugate_target(mu):
    likelihood = tfd.Normal(mu[..., tf.newaxis], 1.0).log_prob(_Y)
    return tfd.Normal(0.0, 1.0).log_prob(mu) + tf.reduce_sum(likelihood, axis=-1)


def _offset_surrogate(scale_ratio):
    """Independent replicates of a surrogate off by half a posterior sd."""
    sd = float(np.sqrt(_POSTERIOR_VARIANCE))
    return tfd.Normal(
        tf.fill([_REPLICATES], _POSTERIOR_MEAN + 0.5 * sd), scale_ratio * sd
    )


def _z_score(estimates, truth):
    estimates = np.asarray(estimates, np.float64)
    standard_error = estimates.std(ddof=1) / np.sqrt(estimates.size)
    return (estimates.mean() - truth) / standard_error


def _corrected_moments(scale_ratio, num_draws, seed):
    draws = psis.psis_draws(
        _conjugate_target, _offset_surrogate(scale_ratio), num_draws, seed
    )
    moments, mcse = psis.psis_expectation(
        lambda mu: tf.stack([mu, tf.square(mu)], axis=-1), draws
    )
    assert moments.shape == mcse.shape == (_REPLICATES, 2)
    return draws.pareto_k.numpy(), moments.numpy(), mcse.numpy()


_TRUE_MOMENTS = (_POSTERIOR_MEAN, _POSTERIOR_VARIANCE + _POSTERIOR_MEAN**2)
# The relative standard error of a sample sd from R replicates: 1/sqrt(2(R - 1)).
_SD_TOLERANCE = Z_TOLERANCE / np.sqrt(2 * (_REPLICATES - 1))


def test_psis_expectations_of_a_wider_surrogate_are_unbiased():
    # q wider than p bounds the weights (k-hat < 0): the self-normalized
    # estimate's O(1/S) bias is ~1/10 of the standard error here.
    pareto_k, moments, mcse = _corrected_moments(1.3, 1000, (7, 1))
    assert np.all(pareto_k < 0.5)
    for column, truth in enumerate(_TRUE_MOMENTS):
        assert abs(_z_score(moments[:, column], truth)) < Z_TOLERANCE
        # The MCSE is the spread of the estimates across replicates.
        ratio = np.sqrt(np.mean(np.square(mcse[:, column]))) / np.std(
            moments[:, column], ddof=1
        )
        assert abs(ratio - 1.0) < _SD_TOLERANCE
    # Power: the uncorrected surrogate mean is 0.22 away, hundreds of SEs.
    assert abs(_z_score(moments[:, 0], _POSTERIOR_MEAN + 0.5 * 0.447)) > 10


def test_psis_mcse_accounts_for_the_error_of_a_narrower_surrogate():
    # q narrower than p: the weights have a Pareto tail, k = 1 - 0.8^2 = 0.36.
    # Smoothing trades variance for a bias towards q that vanishes as S grows
    # [Vehtari et al. 2024]; at S = 1000 it is ~0.3 of an estimate's sd
    # (measured), so the root mean squared error over the replicates, bias
    # included, is within the tolerance of the sample sd of the root mean
    # squared MCSE.
    pareto_k, moments, mcse = _corrected_moments(0.8, 1000, (7, 2))
    assert np.median(pareto_k) < 0.5
    for column, truth in enumerate(_TRUE_MOMENTS):
        rmse = np.sqrt(np.mean(np.square(moments[:, column] - truth)))
        ratio = np.sqrt(np.mean(np.square(mcse[:, column]))) / rmse
        assert abs(ratio - 1.0) < _SD_TOLERANCE
    assert abs(_z_score(moments[:, 0], _POSTERIOR_MEAN + 0.5 * 0.447)) > 10


def test_resampled_draws_converge_to_the_posterior():
    resampled = psis.importance_resample(
        _conjugate_target, _offset_surrogate(1.3), num_samples=500, seed=(8, 1)
    )
    assert resampled.samples.shape == (500, _REPLICATES)
    assert resampled.pareto_k.shape == (_REPLICATES,)
    means = tf.reduce_mean(resampled.samples, axis=0)
    second_moments = tf.reduce_mean(tf.square(resampled.samples), axis=0)
    assert abs(_z_score(means, _POSTERIOR_MEAN)) < Z_TOLERANCE
    truth = _POSTERIOR_VARIANCE + _POSTERIOR_MEAN**2
    assert abs(_z_score(second_moments, truth)) < Z_TOLERANCE


# ---------------------------------------- the loss's target-calling convention

_JOINT_TARGET = tfd.JointDistributionNamed(
    dict(a=tfd.Normal(0.0, 1.0), b=lambda a: tfd.Normal(a, 1.0))
)


def _joint_target(a, b):
    return _JOINT_TARGET.log_prob(a=a, b=b)


def test_joint_distribution_with_dict_samples():
    # The target takes the dict as keywords, as tfp.vi passes it. E[a b] = 1.
    surrogate = tfd.JointDistributionNamed(
        dict(a=tfd.Normal(0.0, 1.2), b=tfd.Normal(0.0, 1.6))
    )
    draws = psis.psis_draws(_joint_target, surrogate, 2000, seed=(3, 4))
    assert set(draws.samples) == {"a", "b"}
    value, mcse = psis.psis_expectation(lambda z: z["a"] * z["b"], draws)
    assert abs(value - 1.0) < Z_TOLERANCE * mcse
    resampled = psis.importance_resample(_joint_target, surrogate, 300, seed=(3, 5))
    assert {k: v.shape for k, v in resampled.samples.items()} == {
        "a": (300,),
        "b": (300,),
    }


def test_joint_distribution_coroutine_samples_are_spread_and_seed_passed():
    seeds = []

    def target(a, b, seed=None):
        seeds.append(seed)
        return _joint_target(a, b)

    @tfd.JointDistributionCoroutine
    def surrogate():
        yield tfd.JointDistributionCoroutine.Root(tfd.Normal(0.0, 1.2, name="a"))
        yield tfd.JointDistributionCoroutine.Root(tfd.Normal(0.0, 1.6, name="b"))

    draws = psis.psis_draws(target, surrogate, 2000, seed=(3, 4))
    assert seeds and seeds[0] is not None
    value, mcse = psis.psis_expectation(lambda z: z.a * z.b, draws)
    assert abs(value - 1.0) < Z_TOLERANCE * mcse


def test_batched_resampling_uses_each_members_own_weights():
    # Two batch members whose targets differ by their location.
    locations = tf.constant([-2.0, 3.0])
    surrogate = tfd.MultivariateNormalDiag(tf.zeros([2, 3]), tf.fill([3], 3.0))
    target = tfd.MultivariateNormalDiag(locations[:, tf.newaxis] * tf.ones(3))
    resampled = psis.importance_resample(target.log_prob, surrogate, 400, seed=(9, 9))
    assert resampled.samples.shape == (400, 2, 3)
    means = tf.reduce_mean(resampled.samples, axis=[0, 2]).numpy()
    np.testing.assert_array_less(np.abs(means - locations.numpy()), 0.5)


def test_tfp_surrogate_builders_deferred_modules_are_accepted():
    surrogate = tfp.experimental.vi.build_factored_surrogate_posterior(
        event_shape=[_DIM], seed=(2, 3)
    )
    pareto_k = psis.psis_diagnostic(_TARGET.log_prob, surrogate, 500, seed=(2, 4))
    assert pareto_k.shape == ()


def test_target_with_one_value_per_dimension_is_refused():
    with pytest.raises(ValueError, match="one log-density per sample"):
        psis.psis_draws(
            tfd.Normal(0.0, 1.0).log_prob, _isotropic_surrogates(1.0), 100, (1, 1)
        )


# ----------------------------------------------------------- argument checks

_SURROGATE = tfd.Normal(0.0, 1.0)


def _variable_surrogate():
    return tfd.Normal(tf.Variable([0.1, -0.2]), 1.0)


def _resample(**arguments):
    return psis.importance_resample(num_samples=5, **arguments)


_BAD_DRAW_ARGUMENTS = [
    (dict(target_log_prob_fn=1.0), TypeError, "`target_log_prob_fn` must be"),
    (dict(surrogate_posterior="q"), TypeError, "`surrogate_posterior` must be"),
    (dict(num_draws=1), ValueError, "`num_draws` must be at least 2"),
    (dict(num_draws=-5), ValueError, "`num_draws` must be at least 2"),
    (dict(num_draws=100.0), TypeError, "`num_draws` must be a Python integer"),
    (dict(num_draws=True), TypeError, "`num_draws` must be a Python integer"),
    (dict(num_draws=tf.constant(100)), TypeError, "`num_draws` must be a Python"),
    (dict(seed=(1, 2, 3)), ValueError, "`seed`"),
    (dict(seed=1.5), TypeError, "`seed`"),
    (dict(name=3), TypeError, "`name` must be None or a str"),
]


@mode_parameter
@pytest.mark.parametrize("kwargs, error, match", _BAD_DRAW_ARGUMENTS)
@pytest.mark.parametrize(
    "function",
    [psis.psis_draws, psis.psis_diagnostic, _resample],
    ids=lambda f: f.__name__,
)
def test_bad_arguments_name_the_argument(mode, function, kwargs, error, match):
    surrogate = _variable_surrogate()
    arguments = dict(
        target_log_prob_fn=_SURROGATE.log_prob,
        surrogate_posterior=surrogate,
        num_draws=100,
        seed=None,
    )
    arguments.update(kwargs)
    assert_raises(mode, lambda: function(**arguments), error, match)
    np.testing.assert_array_equal(surrogate.loc.numpy(), np.float32([0.1, -0.2]))


@pytest.mark.parametrize(
    "num_samples, error, match",
    [
        (0, ValueError, "`num_samples` must be at least 1"),
        (-3, ValueError, "`num_samples` must be at least 1"),
        (2.5, TypeError, "`num_samples` must be a positive integer"),
        (True, TypeError, "`num_samples` must be an integer"),
        ("3", TypeError, "`num_samples` must be a positive integer"),
        (tf.constant(3.0), TypeError, "`num_samples` must be an integer"),
    ],
)
def test_importance_resample_checks_num_samples(num_samples, error, match):
    with pytest.raises(error, match=match):
        psis.importance_resample(_SURROGATE.log_prob, _SURROGATE, num_samples)


def _nan_above_one(z):
    """The target's density, but NaN for z > 1 in batch member 1 (of 2)."""
    return tf.where((z > 1.0) & tf.equal(tf.range(2), 1), np.nan, -0.5 * z**2)


_BAD_VALUES = [
    (_nan_above_one, [0.0, 0.0], "`target_log_prob_fn` must return finite"),
    (lambda z: tf.where(z > 1.0, np.inf, -(z**2)), [0.0, 0.0], "NaN or \\+inf"),
    (
        lambda z: tf.fill(tf.shape(z), -np.inf),
        [0.0, 0.0],
        "`target_log_prob_fn` is -inf at every draw of 2 batch member",
    ),
    (lambda z: -(z**2), [np.nan, 0.0], "`surrogate_posterior`'s log-density"),
]


@pytest.mark.parametrize("target, loc, match", _BAD_VALUES)
@pytest.mark.parametrize(
    "function",
    [psis.psis_draws, psis.psis_diagnostic, _resample],
    ids=lambda f: f.__name__,
)
def test_eager_draws_without_usable_weights_name_the_culprit(
    function, target, loc, match
):
    surrogate = tfd.Normal(tf.Variable(loc), 1.0)
    with pytest.raises(ValueError, match=match):
        function(
            target_log_prob_fn=target,
            surrogate_posterior=surrogate,
            num_draws=200,
            seed=(1, 2),
        )
    np.testing.assert_array_equal(surrogate.loc.numpy(), np.float32(loc))


def test_traced_draws_flag_the_bad_batch_member_with_nan():
    # In a graph (XLA flags alike: see the psis_smooth test above).
    surrogate = tfd.Normal([0.0, 0.0], 1.0)

    @tf.function
    def run():
        draws = psis.psis_draws(_nan_above_one, surrogate, 200, seed=(1, 2))
        resampled = psis.importance_resample(
            _nan_above_one, surrogate, 50, 200, seed=(1, 2)
        )
        return draws, resampled

    draws, resampled = run()
    assert np.isfinite(draws.pareto_k[0]) and np.isnan(draws.pareto_k[1])
    assert np.all(np.isnan(draws.log_weights[:, 1]))
    assert np.all(np.isfinite(resampled.samples[:, 0]))
    assert np.all(np.isnan(resampled.samples[:, 1]))
    # Back in eager mode the flagged weights are refused by name.
    with pytest.raises(ValueError, match="`draws.log_weights` must be finite"):
        psis.psis_expectation(tf.identity, draws)


def test_khat_report_gives_nan_and_the_cause_instead_of_raising():
    with pytest.warns(psis.PSISWarning, match="returned NaN or \\+inf"):
        pareto_k, message = psis.khat_report(
            _nan_above_one, tfd.Normal([0.0, 0.0], 1.0), 200, seed=(1, 2)
        )
    assert np.isnan(pareto_k) and "cannot be judged" in message


def _draws():
    return psis.psis_draws(_SURROGATE.log_prob, _SURROGATE, 100, seed=(1, 1))


@pytest.mark.parametrize(
    "fn, draws, error, match",
    [
        (None, _draws, TypeError, "`fn` must be"),
        (tf.identity, lambda: tuple(_draws()[:2]), TypeError, "`draws` must be a PSI"),
        (lambda z: z[:10], _draws, ValueError, "`fn` must return values shaped"),
        (lambda z: None, _draws, TypeError, "`fn` must return a numeric tensor"),
        (lambda z: {"z": z}, _draws, TypeError, "`fn` must return a numeric tensor"),
        (tf.strings.as_string, _draws, TypeError, "`fn` must return a real tensor"),
        (tf.math.log, _draws, ValueError, "`fn` must return finite values"),
        (
            tf.identity,
            lambda: _draws()._replace(log_weights=tf.zeros([100], tf.int32)),
            TypeError,
            "`draws.log_weights` must be a floating-point tensor",
        ),
        (
            tf.identity,
            lambda: _draws()._replace(log_weights=tf.constant(0.0)),
            ValueError,
            "`draws.log_weights` must have a draws axis",
        ),
        (
            tf.identity,
            lambda: _draws()._replace(samples=tf.zeros([99])),
            ValueError,
            "`draws.samples` must be shaped",
        ),
        (
            tf.identity,
            lambda: _draws()._replace(log_weights=tf.fill([100], np.nan)),
            ValueError,
            "`draws.log_weights` must be finite.*100 NaN",
        ),
    ],
)
def test_psis_expectation_checks_its_arguments(fn, draws, error, match):
    with pytest.raises(error, match=match):
        psis.psis_expectation(fn, draws())


def test_psis_expectation_checks_its_name():
    with pytest.raises(TypeError, match="`name` must be None or a str"):
        psis.psis_expectation(tf.identity, _draws(), name=1)


# ----------------------------------------------------- verdicts and reports


def test_thresholds_are_those_of_the_papers():
    assert psis.khat_threshold(100) == pytest.approx(0.5)  # 1 - 1/log10(100)
    assert psis.khat_threshold(4000) == pytest.approx(0.7)  # capped at 0.7
    assert psis.khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert [psis.khat_verdict(k, 4000) for k in (-np.inf, 0.3, 0.6, 0.71)] == [
        "good",
        "good",
        "ok",
        "bad",
    ]
    assert psis.khat_verdict(0.6, 100) == "bad"  # above 1 - 1/log10(100)
    assert psis.khat_verdict(np.inf, 4000) == psis.khat_verdict(np.nan, 4000) == "bad"
    with pytest.raises(TypeError, match="`pareto_k` must be a real number"):
        psis.khat_verdict("0.3", 4000)


def test_messages_say_what_each_verdict_means():
    assert "good" in psis.khat_message(0.2, 1000)
    assert "usable (0.5 to 0.67)" in psis.khat_message(0.6, 1000)
    # Between 1 - 1/log10(S) and 0.7 more draws help: S > 10^(1/(1-k)).
    assert "= 1334" in psis.khat_message(0.68, 1000)
    assert "cannot repair" in psis.khat_message(0.9, 1000)
    assert "no Pareto fit" in psis.khat_message(np.inf, 1000)
    with pytest.raises(ValueError, match="`num_draws` must be at least 2"):
        psis.khat_message(0.2, 1)


def test_khat_report_warns_only_above_the_threshold():
    narrow = _isotropic_surrogates(0.3, batch=1)
    with pytest.warns(psis.PSISWarning, match="not reliable"):
        pareto_k, message = psis.khat_report(_TARGET.log_prob, narrow, 1000, (2, 2))
    assert pareto_k > 0.7 and f"{pareto_k:.2f}" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", psis.PSISWarning)
        pareto_k, message = psis.khat_report(
            _TARGET.log_prob, _isotropic_surrogates(1.2, batch=1), 1000, (2, 2)
        )
    assert pareto_k < 0.5 and "good" in message


def test_khat_report_refuses_to_run_in_a_graph():
    report = tf.function(
        lambda: psis.khat_report(_SURROGATE.log_prob, _SURROGATE, 100, (1, 1)),
        autograph=False,
    )
    with pytest.raises(RuntimeError, match="must run eagerly"):
        report()


def test_khat_rows_for_the_report():
    rows = psis.khat_rows(
        _TARGET.log_prob,
        {
            "wide": _isotropic_surrogates(1.2, 1),
            "narrow": _isotropic_surrogates(0.3, 1),
        },
        num_draws=1000,
        seed=(4, 4),
    )
    assert [(r["surrogate"], r["verdict"]) for r in rows] == [
        ("wide", "good"),
        ("narrow", "bad"),
    ]
    with pytest.raises(TypeError, match="`surrogates` must be a non-empty mapping"):
        psis.khat_rows(_TARGET.log_prob, [])


# ----------------------------------------------------------------- the example


def _example():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "psis_check.py"
    spec = importlib.util.spec_from_file_location("psis_check", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.slow
def test_example_flags_the_mean_field_fit_and_passes_the_full_rank_one():
    results = _example().main([])
    assert results["mean-field"]["pareto_k"] > 0.7
    assert results["full-rank"]["pareto_k"] < 0.5
    # A full-rank Gaussian matches the Gaussian posterior: the PSIS-corrected
    # sd is the exact one up to its Monte Carlo error (an sd estimate's
    # relative SE is 1/sqrt(2 S) for S draws of near-equal weight).
    full_rank = results["full-rank"]
    relative_se = 1.0 / np.sqrt(2 * psis.DEFAULT_NUM_DRAWS)
    ratio = full_rank["corrected_sd"] / full_rank["true_sd"]
    assert abs(ratio - 1.0) < Z_TOLERANCE * relative_se
