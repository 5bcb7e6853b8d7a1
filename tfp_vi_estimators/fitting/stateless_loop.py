"""`tfp.math.minimize_stateless`'s loop, with the gradient estimator's state carried.

The same steps, seeds and trace as `tfp.math.minimize_stateless` (an initial
step, then a `trace_scan` over steps 1 .. num_steps - 1, stopping the updates
of converged batch members), with one difference: each step's gradients come
from `training_step.TrainingStep` (the estimator's `gradient_parts` and
`combine`, then the optax-style update), and
the estimator's state travels with the parameters and the optimizer state, so
an estimator that learns across steps (the adaptive score weight) adapts here
as in the other fits:

```none
loss, grads, estimator_state = step(parameters, seed, estimator_state)
updates, optimizer_state = optimizer.update(grads, optimizer_state, parameters)
parameters = parameters + updates
```
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vi_estimators._internal.tfp_internals import trace_scan
from tfp_vi_estimators.training_step import StepState, TrainingStep

__all__ = ["minimize_stateless"]

_Traceable = tfp.math.MinimizeTraceableQuantities


def minimize_stateless(
    evaluate_fn,
    estimator,
    init,
    num_steps,
    optimizer,
    convergence_criterion=None,
    trace_fn=None,
    jit_compile=False,
    seed=None,
    name="minimize",
):
    """`(final_parameters, trace)`, as `tfp.math.minimize_stateless`.

    Args:
      evaluate_fn: `evaluate_fn(*parameters, seed=seed)` -> `LossEvaluation`.
      estimator: the loss's `GradientEstimator`.
      init, num_steps, optimizer, convergence_criterion, trace_fn,
      jit_compile, seed, name: as for `tfp.math.minimize_stateless`.
    """
    if jit_compile:
        kwargs = dict(locals(), jit_compile=False)
        return tf.function(autograph=False, jit_compile=True)(
            lambda: minimize_stateless(**kwargs)
        )()
    with tf.name_scope(name):
        seed_is_none = seed is None
        init_seed = None
        if not seed_is_none:
            seed = tfp.random.sanitize_seed(seed, salt="minimize")
            init_seed, seed = tfp.random.split_seed(seed, n=2)
        step_fn = _step_fn(evaluate_fn, optimizer)
        estimator_state = estimator.initial_state(
            [tf.convert_to_tensor(x) for x in tf.nest.flatten(init)]
        )
        loss, grads, parameters, optimizer_state, estimator_state = step_fn(
            init, optimizer.init(init), estimator_state, seed=init_seed
        )
        initial = _initial_quantities(
            loss, grads, parameters, optimizer_state, convergence_criterion, seed
        )
        with tf.control_dependencies([loss]):
            first_trace = tf.nest.map_structure(
                lambda x: tf.convert_to_tensor(x)[tf.newaxis, ...], trace_fn(initial)
            )
        body = _loop_body(step_fn, convergence_criterion, seed_is_none)

        def run_loop():
            (final, _), trace = trace_scan(
                loop_fn=body,
                initial_state=(initial, estimator_state),
                elems=tf.range(1, num_steps),
                trace_fn=lambda state: trace_fn(state[0]),
            )
            trace = tf.nest.map_structure(
                lambda t0, t: tf.concat([t0, t], axis=0), first_trace, trace
            )
            return final.parameters, trace

        with tf.control_dependencies(tf.nest.flatten(first_trace)):
            if num_steps > 1:
                return run_loop()
            return parameters, first_trace


def _initial_quantities(
    loss, grads, parameters, optimizer_state, convergence_criterion, seed
):
    """The traceable quantities after the initial step, as TFP builds them."""
    criterion_state = ()
    if convergence_criterion is not None:
        criterion_state = convergence_criterion.bootstrap(loss, grads, parameters)
    with tf.control_dependencies([loss]):
        return _Traceable(
            loss=loss,
            gradients=grads,
            parameters=parameters,
            step=0,
            has_converged=tf.zeros(tf.shape(loss), dtype=tf.bool),
            convergence_criterion_state=criterion_state,
            optimizer_state=optimizer_state,
            seed=-1 if seed is None else seed,
        )


def _step_fn(evaluate_fn, optimizer):
    """One compiled step: `(loss, grads, parameters, optimizer_state, est_state)`."""
    training_step = TrainingStep(
        lambda parameters, seed, batch: evaluate_fn(*parameters, seed=seed), optimizer
    )

    @tf.function(autograph=False)
    def step(parameters, optimizer_state, estimator_state, seed=None):
        state, result = training_step(
            StepState(parameters, optimizer_state, estimator_state), seed
        )
        grads = tf.nest.pack_sequence_as(state.parameters, result.gradients)
        return (
            result.loss,
            grads,
            state.parameters,
            state.optimizer_state,
            state.estimator,
        )

    return step


def _loop_body(step_fn, convergence_criterion, seed_is_none):
    """`tfp.math.minimize`'s loop body: converged members keep their state."""

    def unconverged(state, step):
        previous, estimator_state = state
        if seed_is_none:
            seed, next_seed = None, previous.seed
        else:
            seed, next_seed = tfp.random.split_seed(previous.seed, n=2)
        loss, grads, parameters, optimizer_state, estimator_state = step_fn(
            previous.parameters,
            previous.optimizer_state,
            estimator_state,
            seed=seed,
        )
        has_converged = previous.has_converged
        criterion_state = previous.convergence_criterion_state
        if convergence_criterion is not None:
            has_converged, criterion_state = convergence_criterion.one_step(
                step, loss, grads, parameters, criterion_state
            )
        quantities = _Traceable(
            loss=loss,
            gradients=grads,
            parameters=parameters,
            step=step,
            has_converged=has_converged,
            convergence_criterion_state=criterion_state,
            optimizer_state=optimizer_state,
            seed=next_seed,
        )
        return quantities, estimator_state

    def body(state, step):
        return tf.cond(
            tf.reduce_all(state[0].has_converged),
            lambda: state,
            lambda: unconverged(state, step),
        )

    return body
