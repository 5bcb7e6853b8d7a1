"""Keras 3 models: SurrogatePosteriorModel, VariationalModel and the VAE example."""

import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from modes import assert_raises, mode_parameter
from tensorflow_probability.python.internal import samplers

import tfp_vi_estimators as tve
from tfp_vi_estimators import keras_models
from tfp_vi_estimators.keras_models import (
    SurrogatePosteriorModel,
    VariationalModel,
    replica_seed,
)

tfd = tfp.distributions
tfb = tfp.bijectors
GE = tve.GradientEstimators
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TARGET = tfd.MultivariateNormalDiag([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
EPS32 = float(np.finfo(np.float32).eps)


def _surrogate():
    loc = tf.Variable([0.3, -0.2, 0.1], name="loc")
    scale = tfp.util.TransformedVariable([1.0, 0.5, 2.0], tfb.Softplus(), name="scale")
    return tfd.MultivariateNormalDiag(loc, scale), loc, scale


@pytest.mark.parametrize(
    "version, backend", [("2.15.0", "tensorflow"), ("3.4.1", "jax"), ("3.4.1", "torch")]
)
def test_other_keras_versions_and_backends_are_refused_naming_them(
    version, backend, monkeypatch
):
    monkeypatch.setattr(keras, "__version__", version)
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(ImportError, match=rf"Keras {version} with the '{backend}'"):
        keras_models._check_keras()


def test_keras_3_with_tensorflow_backend_is_accepted():
    assert keras.__version__.startswith("3.")
    keras_models._check_keras()


def test_surrogate_variables_are_adopted_not_copied():
    q, loc, scale = _surrogate()
    model = SurrogatePosteriorModel(_TARGET.log_prob, q)
    assert [v.path for v in model.trainable_variables] == ["loc", "scale"]
    model.trainable_variables[0].assign([5.0, 5.0, 5.0])
    np.testing.assert_array_equal(loc.numpy(), [5.0, 5.0, 5.0])


def _reference_fit(seed, num_steps, optimizer, jit_compile):
    """The fit `SurrogatePosteriorModel` documents, written out on one device.

    Step t draws with `fold_in([seed, t], 0)` (the `SeedGenerator` state, replica
    0) and applies the gradient of that step's loss. Compiled as Keras compiles
    its step: under XLA, stateless samplers draw other values than without.
    """
    q, loc, scale = _surrogate()
    variables = [loc, scale.pretransformed_input]
    optimizer.build(variables)

    def loss_at(t):
        step_seed = samplers.fold_in(tf.stack([tf.constant(seed), t]), tf.constant(0))
        return tve.monte_carlo_variational_loss(
            _TARGET.log_prob,
            q,
            gradient_estimator=GE.DOUBLY_REPARAMETERIZED,
            seed=step_seed,
        )

    @tf.function(autograph=False, jit_compile=jit_compile)
    def step(t):
        with tf.GradientTape() as tape:
            loss = loss_at(t)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )
        return loss

    losses = np.array([step(tf.constant(t)).numpy() for t in range(num_steps)])
    next_loss = tf.function(loss_at, autograph=False, jit_compile=jit_compile)
    return losses, q, float(next_loss(tf.constant(num_steps)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_without_data_is_the_documented_loop_and_reaches_the_target(jit_compile):
    epochs, steps = 3, 100
    q, _, _ = _surrogate()
    model = SurrogatePosteriorModel(
        _TARGET.log_prob, q, gradient_estimator=GE.DOUBLY_REPARAMETERIZED, seed=1
    )
    model.compile(keras.optimizers.Adam(0.05), jit_compile=jit_compile)
    history = model.fit(epochs=epochs, steps_per_epoch=steps, verbose=0)
    evaluated = model.evaluate(verbose=0)

    losses, q_expected, next_loss = _reference_fit(
        1, epochs * steps, keras.optimizers.Adam(0.05), jit_compile
    )
    # Same seeds, same ops: the same float32 variables.
    for got, expected in zip(
        q.trainable_variables, q_expected.trainable_variables, strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    # `evaluate` computes the loss of the next seed; one value, no rounding.
    assert evaluated == next_loss
    # The epoch losses are Keras' float32 running means of the step losses:
    # within (n - 1) eps32 mean|loss| of the exact means, n steps per epoch.
    losses = losses.astype(np.float64).reshape(epochs, steps)
    bound = (steps - 1) * EPS32 * np.abs(losses).mean(axis=1)
    error = np.abs(np.asarray(history.history["loss"]) - losses.mean(axis=1))
    assert np.all(error <= bound), (error, bound)
    # The target is in the surrogate family and the doubly reparameterized
    # gradient vanishes at q = p for every draw, so the fit converges to the
    # target itself, not to a Monte Carlo noise floor: KL(q || p) (computed in
    # float64 from the fitted parameters) is below the float32 rounding error
    # of one loss value, eps32 (|H[p]| + |E_p log p|) = 2 eps32 |H[p]|.
    kl = _float64_kl_to_target(q)
    assert kl <= 2 * EPS32 * abs(float(_TARGET.entropy())), kl


def _float64_kl_to_target(q):
    loc, scale = (np.float64(t) for t in (q.mean(), q.stddev()))
    target_loc, target_scale = (
        np.float64(t) for t in (_TARGET.mean(), _TARGET.stddev())
    )
    ratio = scale / target_scale
    return 0.5 * np.sum(
        ratio**2 - 1.0 - 2.0 * np.log(ratio) + ((loc - target_loc) / target_scale) ** 2
    )


def test_callbacks_early_stopping_and_model_checkpoint(tmp_path):
    q, loc, _ = _surrogate()
    model = SurrogatePosteriorModel(
        _TARGET.log_prob, q, gradient_estimator=GE.DOUBLY_REPARAMETERIZED, seed=2
    )
    model.compile(keras.optimizers.Adam(0.05))
    path = str(tmp_path / "fit.weights.h5")
    history = model.fit(
        epochs=30,
        steps_per_epoch=50,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping("loss", min_delta=1e-3, patience=1),
            keras.callbacks.ModelCheckpoint(
                path, monitor="loss", save_weights_only=True
            ),
        ],
    )
    assert len(history.history["loss"]) < 30  # stopped early
    fitted = loc.numpy()

    q2, loc2, _ = _surrogate()
    restored = SurrogatePosteriorModel(_TARGET.log_prob, q2)
    restored.load_weights(path)
    np.testing.assert_array_equal(loc2.numpy(), fitted)


def test_steps_are_seeded_by_the_seed_generator():
    def losses(seed):
        q, _, _ = _surrogate()
        model = SurrogatePosteriorModel(_TARGET.log_prob, q, seed=seed)
        model.compile(keras.optimizers.SGD(0.0))
        return model.fit(epochs=2, steps_per_epoch=1, verbose=0).history["loss"]

    first = losses(3)
    assert first == losses(3)
    assert first != losses(4)
    assert first[0] != first[1]  # a fresh seed every step


def test_replica_seed_is_identity_fold_in_outside_distribution():
    seed = tf.constant([3, 4])
    np.testing.assert_array_equal(
        replica_seed(seed), samplers.fold_in(seed, tf.constant(0))
    )


def test_fit_without_data_needs_steps_per_epoch():
    q, _, _ = _surrogate()
    model = SurrogatePosteriorModel(_TARGET.log_prob, q)
    model.compile(keras.optimizers.Adam(0.05))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(epochs=1)


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        (dict(target_log_prob_fn=None), TypeError, "target_log_prob_fn"),
        (dict(surrogate_posterior=3), TypeError, "surrogate_posterior"),
        (dict(sample_size=0), ValueError, "sample_size"),
        (dict(importance_sample_size=1.5), TypeError, "importance_sample_size"),
        (dict(discrepancy_fn="kl"), TypeError, "discrepancy_fn"),
        (dict(gradient_estimator="x"), TypeError, "gradient_estimator"),
        (dict(seed=(1, 2)), TypeError, "seed"),
        (dict(trainable_variables=[1.0]), TypeError, "trainable_variables"),
        (dict(gradient_estimator=GE.VIMCO), ValueError, "importance_sample_size"),
        (
            dict(stopped_surrogate_posterior=tfd.Normal(0.0, 1.0)),
            ValueError,
            "stopped_surrogate_posterior",
        ),
    ],
)
@mode_parameter
def test_bad_arguments_name_the_argument(kwargs, error, argument, mode):
    q, _, _ = _surrogate()
    kwargs = dict(
        dict(target_log_prob_fn=_TARGET.log_prob, surrogate_posterior=q), **kwargs
    )
    assert_raises(mode, lambda: SurrogatePosteriorModel(**kwargs), error, argument)


def test_no_trainable_variables_is_an_error():
    with pytest.raises(ValueError, match="no trainable variables"):
        SurrogatePosteriorModel(_TARGET.log_prob, tfd.Normal(0.0, 1.0))


class _AmortizedGaussian(VariationalModel):
    """x ~ N(z, 1), z ~ N(0, 1): the exact posterior is N(x / 2, 1 / 2)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(2)

    def variational_problem(self, data, training=False):
        out = self.encoder(data[:, None])
        surrogate = tfd.Normal(out[:, 0], tf.nn.softplus(out[:, 1]))

        def target_log_prob_fn(z):
            return tfd.Normal(0.0, 1.0).log_prob(z) + tfd.Normal(z, 1.0).log_prob(data)

        return target_log_prob_fn, surrogate


@pytest.mark.parametrize(
    "gradient_estimator, importance_sample_size",
    [
        (GE.DOUBLY_REPARAMETERIZED, 4),
        pytest.param(GE.VIMCO, 4, marks=pytest.mark.slow),
        pytest.param(GE.REPARAMETERIZATION, 1, marks=pytest.mark.slow),
    ],
)
def test_amortized_model_learns_the_exact_posterior(
    gradient_estimator, importance_sample_size
):
    x = np.random.default_rng(0).normal(scale=np.sqrt(2.0), size=512).astype(np.float32)
    model = _AmortizedGaussian(
        gradient_estimator=gradient_estimator,
        importance_sample_size=importance_sample_size,
        seed=0,
    )
    model.compile(keras.optimizers.Adam(0.05))
    model.fit(x, batch_size=64, epochs=30, verbose=0, shuffle=False)
    _, q = model.variational_problem(tf.constant([-2.0, 0.0, 2.0]))
    # Exact posterior N(x / 2, 1 / 2); VIMCO's noisier gradient gets a wider margin.
    tolerance = 0.15 if gradient_estimator is GE.VIMCO else 0.05
    np.testing.assert_allclose(q.mean(), [-1.0, 0.0, 1.0], atol=tolerance)
    np.testing.assert_allclose(q.stddev(), np.sqrt(0.5), atol=tolerance)


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


class _LinearGaussianVAE(VariationalModel):
    """x ~ N(w z + b, 1), z ~ N(0, 1): a decoder computing in the layers' dtype.

    Under `mixed_float16` the encoder's outputs and the whole target are
    float16; the maximum-likelihood decoder is |w| = sqrt(var(x) - 1),
    b = mean(x), and the Gaussian surrogate contains the exact posterior, so
    the IWAE bound is tight there.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(2)
        self.decoder = keras.layers.Dense(1)

    def variational_problem(self, data, training=False):
        out = self.encoder(data[:, None])
        surrogate = tfd.Normal(out[:, 0], tf.nn.softplus(out[:, 1]))

        def target_log_prob_fn(z):
            loc = self.decoder(z[..., None])[..., 0]
            one = tf.ones([], loc.dtype)
            return tfd.Normal(0.0 * one, one).log_prob(
                tf.cast(z, loc.dtype)
            ) + tfd.Normal(loc, one).log_prob(tf.cast(data, loc.dtype))

        return target_log_prob_fn, surrogate


def test_mixed_float16_loss_is_float32_and_training_works(mixed_float16):
    x = np.random.default_rng(0).normal(scale=np.sqrt(2.0), size=512).astype(np.float32)
    model = _LinearGaussianVAE(
        gradient_estimator=GE.DOUBLY_REPARAMETERIZED, importance_sample_size=4, seed=0
    )
    model.compile(keras.optimizers.Adam(0.05))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    target, q = model.variational_problem(tf.constant(x[:8]))
    assert q.dtype == tf.float16 and target(q.sample(seed=(1, 1))).dtype == tf.float16
    loss = model.variational_loss(tf.constant(x[:64]), tf.constant([1, 2]))
    assert loss.dtype == tf.float32

    history = model.fit(x, batch_size=64, epochs=30, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    np.testing.assert_allclose(
        abs(model.decoder.kernel.numpy().item()), np.sqrt(x.var() - 1.0), atol=0.05
    )
    np.testing.assert_allclose(model.decoder.bias.numpy().item(), x.mean(), atol=0.05)


class _HalfPrecisionJointWithLambda(VariationalModel):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(1)

    def variational_problem(self, data, training=False):
        loc = self.encoder(data[:, None])[:, 0]
        surrogate = tfd.JointDistributionSequential(
            [
                tfd.Normal(loc, tf.ones([], loc.dtype)),
                lambda z: tfd.Normal(z, z * 0 + 1),
            ]
        )
        return (lambda z, y: tf.zeros_like(z)), surrogate


def test_mixed_float16_surrogate_that_cannot_be_cast_is_a_clear_error(mixed_float16):
    model = _HalfPrecisionJointWithLambda(seed=0)
    with pytest.raises(ValueError, match="float16.*dtype='float32'"):
        model.variational_loss(tf.constant([1.0, 2.0]), tf.constant([1, 2]))


def test_vae_example_runs_a_few_steps():
    spec = importlib.util.spec_from_file_location(
        "vae_mnist", os.path.join(REPO, "examples", "vae_mnist.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(
        [
            "--epochs",
            "1",
            "--steps",
            "3",
            "--eval-importance-samples",
            "2",
            "--verbose",
            "0",
        ]
    )
    # 784 binary pixels: an untrained model scores around 784 log 2 = 543 nats.
    assert 100 < results["train_loss"] < 800
    assert results["test_negative_bound"] < results["test_loss"] + 50


def test_float32_target_wrapper_keeps_the_seed_signature():
    # The loss passes `seed=` only to targets that take it; the wrapper that
    # casts a 16-bit target to float32 must not hide the signature.
    from tfp_vi_estimators.keras_models import _float32_log_prob
    from tfp_vi_estimators.targets import _accepts_seed

    def seeded(z, seed=None):
        return z

    # The wrapper answers as the target it wraps, whatever the answer.
    for target in (_TARGET.log_prob, seeded, lambda z: z):
        assert _accepts_seed(_float32_log_prob(target)) is _accepts_seed(target)
    assert _accepts_seed(_float32_log_prob(seeded)) is True
    assert _accepts_seed(_float32_log_prob(lambda z: z)) is False
    half = _float32_log_prob(lambda z: tf.cast(z, tf.float16))
    assert half(tf.constant([1.5])).dtype == tf.float32
