"""Loss values and gradients are bit-identical to those recorded before the redesign.

The matrix (every estimator, enum members and configured objects with their
baselines, x surrogate kinds x discrepancies x (sample_size,
importance_sample_size)) is in `cases.py`; the values in `values.json` were
recorded with `python -m golden.record` (run from `tests/`) on the code before
issue 12's redesign. A case that the argument checks refused then must still be
refused; a case that failed after passing the checks then (an explicit
`MixedReparameterization` on a surrogate that is not a `JointDistribution`)
must now be refused by the checks or still fail. Graph
mode retraces every case, so it runs with the slow tests.

One change of op order is deliberate (issue 14, goal 3): the doubly
reparameterized estimators read `log q_{stop(phi)}` of a bijector-transformed
surrogate from the sample's pre-image (value from the base density and the
forward log-det-Jacobian, gradient by a transpose solve) instead of a stopped
copy's `log_prob` (a forward solve), and for a masked autoregressive flow
evaluate one `log_prob` differentiated in the samples only (instead of two
whose parameter gradients cancel). The doubly reparameterized cases on those
three surrogates (`_moved`: full-rank Gaussian, affine flow, MAF) therefore
match to float32 rounding, not bit for bit: measured against the previous
route in eager and graph mode, at most 1.7e-6 absolute (and 1.5e-5 relative on
components of size 1e-2 and less); the tolerance is `atol = rtol = 1e-5`.
"""

import json
import pathlib

import numpy as np
import pytest
from golden.cases import case_names, run_case
from golden.record import decode

VALUES = json.loads(pathlib.Path(__file__).with_name("values.json").read_text())


MOVED_ESTIMATORS = (
    "DOUBLY_REPARAMETERIZED",
    "tfp_vi_DOUBLY_REPARAMETERIZED",
    "dr_partial",
)
MOVED_SURROGATES = ("full_rank", "flow", "maf")
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def _moved(name):
    estimator, surrogate = name.split("-")[:2]
    return estimator in MOVED_ESTIMATORS and surrogate in MOVED_SURROGATES


def _assert_matches(name, got, want):
    if _moved(name):
        np.testing.assert_allclose(got, want, **TOLERANCE)
    else:
        np.testing.assert_array_equal(got, want)


def _check(mode, name):
    expected = VALUES.get(f"{mode}:{name}")
    if isinstance(expected, dict):
        try:
            result = run_case(name, mode)
        except Exception:  # noqa: BLE001 - still fails, as recorded
            return
        assert result is None, f"recorded as failing with {expected['error']}"
        return
    result = run_case(name, mode)
    if expected is None:
        assert result is None, "a case refused before the redesign is now accepted"
        return
    assert result is not None, "a case accepted before the redesign is now refused"
    loss, grads = result
    want = [decode(e) for e in expected]
    _assert_matches(name, loss, want[0])
    assert len(grads) == len(want) - 1
    for got, w in zip(grads, want[1:], strict=True):
        _assert_matches(name, got, w)


@pytest.mark.parametrize("name", case_names())
def test_eager(name):
    _check("eager", name)


@pytest.mark.slow
@pytest.mark.parametrize("name", case_names())
def test_graph(name):
    _check("graph", name)
