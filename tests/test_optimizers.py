"""`optimizers`: bad hyperparameters, parameters, gradients and states.

The update rules themselves are checked against Keras' Adam and by the fits
in `tests/fitting/test_stateless.py`.
"""

import numpy as np
import pytest
import tensorflow as tf
from modes import assert_raises, mode_parameter

from tfp_vi_estimators import optimizers


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: optimizers.sgd(-0.1), ValueError, "`learning_rate` must be non-n"),
        (lambda: optimizers.sgd(np.nan), ValueError, "`learning_rate` must be non"),
        (lambda: optimizers.adam(np.inf), ValueError, "`learning_rate` must be no"),
        (lambda: optimizers.sgd("0.1"), TypeError, "`learning_rate` must be a non"),
        (lambda: optimizers.sgd(True), TypeError, "`learning_rate` must be a non"),
        (lambda: optimizers.sgd(None), TypeError, "`learning_rate` must be a non"),
        (
            lambda: optimizers.sgd(tf.constant(0.1)),
            TypeError,
            "`learning_rate` must be a non-negative float",
        ),
        (lambda: optimizers.sgd(0.1, momentum=1.0), ValueError, "`momentum` must"),
        (lambda: optimizers.sgd(0.1, momentum=-0.5), ValueError, "`momentum` must"),
        (lambda: optimizers.sgd(0.1, momentum=np.nan), ValueError, "`momentum`"),
        (lambda: optimizers.sgd(0.1, momentum="0.9"), TypeError, "`momentum`"),
        (lambda: optimizers.adam(0.1, b1=1.0), ValueError, "`b1` must be in"),
        (lambda: optimizers.adam(0.1, b2=np.nan), ValueError, "`b2` must be in"),
        (lambda: optimizers.adam(0.1, b2=[0.9]), TypeError, "`b2` must be a float"),
        (lambda: optimizers.adam(0.1, eps=0.0), ValueError, "`eps` must be positi"),
        (lambda: optimizers.adam(0.1, eps=-1e-8), ValueError, "`eps` must be posi"),
        (lambda: optimizers.adam(0.1, eps=None), TypeError, "`eps` must be a posi"),
    ],
)
def test_bad_hyperparameters_are_refused_when_the_optimizer_is_made(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_numpy_hyperparameters_are_accepted():
    optimizers.adam(np.float32(0.1), b1=np.float64(0.9), eps=np.float32(1e-7))
    optimizers.sgd(np.float32(0.1), momentum=np.float32(0.5))


_OPTIMIZERS = {
    "sgd": lambda: optimizers.sgd(0.1),
    "momentum": lambda: optimizers.sgd(0.1, momentum=0.9),
    "adam": lambda: optimizers.adam(0.1),
}


def _params():
    return {"loc": tf.constant([0.5, -1.0]), "scale": tf.constant(2.0)}


def _grads(**changes):
    return {"loc": tf.constant([1.0, 2.0]), "scale": tf.constant(-1.0), **changes}


@mode_parameter
@pytest.mark.parametrize(
    "params, error, match",
    [
        ([], ValueError, "`params` must hold at least one tensor"),
        ({"a": tf.constant([1, 2])}, TypeError, "`params` must be a structure of f"),
        ([np.array(["a"])], TypeError, "`params` must be a structure of floating"),
        ([None], TypeError, "`params` must be a structure of floating"),
        (["0.5"], TypeError, "`params` must be a structure of floating"),
        ([True], TypeError, "`params` must be a structure of floating"),
    ],
)
@pytest.mark.parametrize("optimizer", list(_OPTIMIZERS))
def test_bad_params_are_refused_by_init(mode, optimizer, params, error, match):
    init = _OPTIMIZERS[optimizer]().init
    assert_raises(mode, lambda: init(params), error, match)


@mode_parameter
@pytest.mark.parametrize(
    "grads, error, match",
    [
        (_grads(scale=None), TypeError, "None gradient"),
        (_grads(scale=np.float32(1.0)), TypeError, "`grads` must be a structure of"),
        ({"loc": tf.constant([1.0, 2.0])}, ValueError, "structure of the parameters"),
        (_grads(loc=tf.constant([1.0, 2.0, 3.0])), ValueError, "in dtype and shape"),
        (
            _grads(loc=tf.constant([1.0, 2.0], tf.float64)),
            ValueError,
            "in dtype and shape",
        ),
    ],
)
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_bad_grads_are_refused_by_update(mode, optimizer, grads, error, match):
    optimizer = _OPTIMIZERS[optimizer]()
    state = optimizer.init(_params())
    assert_raises(mode, lambda: optimizer.update(grads, state), error, match)


@pytest.mark.parametrize(
    "optimizer, state",
    [
        ("sgd", None),
        ("momentum", ()),
        ("adam", ()),
        ("adam", [0, 1, 2]),  # a list, not the tuple init returned
    ],
)
def test_a_state_not_from_init_is_refused(optimizer, state):
    with pytest.raises(TypeError, match="`state` must be the tuple of"):
        _OPTIMIZERS[optimizer]().update(_grads(), state)


@pytest.mark.parametrize("optimizer", list(_OPTIMIZERS))
def test_init_and_update_leave_their_arguments_untouched(optimizer):
    # Functional: nothing given is changed, and a failed update changes nothing.
    optimizer = _OPTIMIZERS[optimizer]()
    params, grads = _params(), _grads()
    state = optimizer.init(params)
    given_state = tf.nest.map_structure(np.array, state)
    updates, new_state = optimizer.update(grads, state, params)
    with pytest.raises(TypeError):
        optimizer.update(_grads(scale=None), state, params)
    assert set(params) == set(grads) == {"loc", "scale"}
    np.testing.assert_array_equal(params["loc"], [0.5, -1.0])
    np.testing.assert_array_equal(grads["loc"], [1.0, 2.0])
    tf.nest.map_structure(np.testing.assert_array_equal, state, given_state)
    assert np.all(np.isfinite(updates["loc"]))
    assert new_state is not state or new_state == ()


def test_adam_with_zero_gradients_stays_finite():
    # eps > 0 is what keeps a zero gradient's update at 0 rather than 0/0.
    optimizer = optimizers.adam(0.1)
    params = tf.constant([1.0, 2.0])
    updates, _ = optimizer.update(tf.zeros(2), optimizer.init(params), params)
    np.testing.assert_array_equal(updates, [0.0, 0.0])
