"""Baselines (control variates) for score-function terms.

A score-function term `stop(f_s - b_s) * grad log q(z_s)` stays unbiased for
any baseline `b_s` that does not depend on draw s, because
`E[b_s grad log q(z_s)] = b_s E[grad log q(z_s)] = 0`. A good baseline is
close to `E[f]`; with an unnormalized target, `f` carries the log evidence
(about -20 for a real model), and without a baseline that offset multiplies
every score and dominates the variance.

```none
leave_one_out:   b_s = (sum_{s'} f_{s'} - f_s) / (S - 1)           (S >= 2)
moving_average:  b   = m_t / (1 - decay^t),  m_t = decay m_{t-1} + (1 - decay) mean_s f
callable:        b   = baseline(),  trained to minimize E[(f - b)^2]
```

#### References

[1] Wouter Kool, Herke van Hoof and Max Welling. Buy 4 REINFORCE samples, get
    a baseline for free! ICLR 2019 workshop.
[2] Andriy Mnih and Karol Gregor. Neural variational inference and learning in
    belief networks. ICML 2014. arXiv:1402.0030.
"""

import tensorflow as tf

from tfp_vi_estimators._internal.gradients import dense_gradient
from tfp_vi_estimators.estimators.base import GradientEstimator

__all__ = [
    "Baseline",
    "BaselinedEstimator",
    "CallableBaseline",
    "LeaveOneOut",
    "MovingAverage",
    "NoBaseline",
    "make_baseline",
    "score_term",
]


class Baseline:
    """The protocol every baseline follows.

    Attributes:
      min_sample_size: smallest `sample_size` the baseline works with.
      carries_state: whether the baseline learns from step to step, in the
        estimator's state (`MovingAverage`).
    """

    min_sample_size = 1
    carries_state = False

    def __call__(self, f):
        """The baseline `b`, broadcast to `f`'s shape `[S] + batch_shape`."""
        raise NotImplementedError

    def fit_term(self, signal, b):
        """A value-neutral term that trains the baseline, or `None`."""
        del signal, b
        return None


class NoBaseline(Baseline):
    def __call__(self, f):
        return tf.zeros_like(f)

    def __repr__(self):
        return "None"


class LeaveOneOut(Baseline):
    """`b_s`: the mean of the other draws' values (needs `sample_size >= 2`).

    With `allow_single_draw` (the `'auto'` baseline), a single draw gets no
    baseline instead of an error.
    """

    def __init__(self, allow_single_draw=False):
        self.min_sample_size = 1 if allow_single_draw else 2

    def __call__(self, f):
        if tf.compat.dimension_value(f.shape[0]) == 1:
            return tf.zeros_like(f)
        f = tf.stop_gradient(f)
        n = tf.cast(tf.shape(f)[0], f.dtype)
        return (tf.reduce_sum(f, axis=0, keepdims=True) - f) / (n - 1.0)

    def __repr__(self):
        return "'leave_one_out'"


class MovingAverage(Baseline):
    """Bias-corrected exponential moving average of earlier steps' mean loss.

    The average is the estimator's state, carried from one training step to
    the next by `initial_state` / `combine` (module docstring of
    `BaselinedEstimator`); the object holds none. A loss evaluation reads and
    writes nothing: in the loss the baseline is `0`, its value at the first
    step, and a training step subtracts `b * grad sum_s W_s score_s` from the
    gradient (the score term is linear in `b`). The average is one number, the
    mean of `f` over the draws and the batch members, kept in float64.
    """

    carries_state = True

    def __init__(self, decay):
        self.decay = decay

    def __call__(self, f):
        return tf.zeros_like(f)  # the baseline enters in `combine`

    def initial_state(self):
        """`{'average': 0, 'steps': 0}` (float64 scalars)."""
        zero = tf.zeros([], tf.float64)
        return {"average": zero, "steps": zero}

    def value(self, state):
        """`b = m_t / (1 - decay^t)` (`0` before the first step)."""
        correction = 1.0 - self.decay ** state["steps"]
        return tf.math.divide_no_nan(state["average"], correction)

    def updated(self, state, mean_f):
        """The state after a step whose draws' mean loss is `mean_f`."""
        mean_f = tf.cast(mean_f, tf.float64)
        average = self.decay * state["average"] + (1.0 - self.decay) * mean_f
        return {"average": average, "steps": state["steps"] + 1.0}

    def __repr__(self):
        return f"'moving_average' (decay={self.decay})"


class CallableBaseline(Baseline):
    """`baseline()`: a user's (possibly learned) baseline, trained alongside.

    `fit_term` is the value-neutral `-stop(f - b) * b`, whose gradient is that
    of `1/2 (f - b)^2`, so an optimizer that updates the baseline's variables
    with the rest fits `b` to `E[f]`.
    """

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, f):
        return tf.broadcast_to(tf.cast(self.fn(), f.dtype), tf.shape(f))

    def fit_term(self, signal, b):
        return -signal * b

    def __repr__(self):
        return repr(self.fn)


class BaselinedEstimator(GradientEstimator):
    """A score-function estimator whose baseline may learn across steps.

    Subclasses set `baseline` (a `Baseline`) and `score_density`, the
    `LogDensities` field whose sum over the K particles is the draw's score
    `score_s`. With a baseline that carries no state this is a plain
    `GradientEstimator`. With a `MovingAverage` the loss reads no state (its
    baseline is `0` there) and the training step adds the baseline, using
    that the score term is linear in `b`:

    ```none
    loss_s   = f_s + stop(f_s) score_s - stop(...)          (value f_s)
    parts    = {gradients: d scalar / d theta,
                score:     d/d theta sum_s W_s score_s,     W_s = d scalar / d loss_s
                mean:      mean of f over the draws and batch members}
    combine:   gradients - b_t score,    b_t = m_t / (1 - decay^t)
               m_{t+1} = decay m_t + (1 - decay) mean,      t + 1
    ```

    `b_t` comes from earlier steps only, so every step's gradient stays
    unbiased. The parts are linear in the draws (replicas average them).
    Differentiated by a plain `tf.GradientTape`, the loss has no baseline and
    the average stays at its initial value: the average moves only in a
    training step (`training_step.value_and_gradients`, the fits, the Keras
    models' `train_step`), never in an evaluation (`evaluate`, `test_step`,
    the diagnostics).
    """

    score_density = "surrogate"

    @property
    def carries_state(self):
        return self.baseline.carries_state

    def initial_state(self, sources):
        """The baseline's state (`()` for a baseline without one)."""
        del sources
        return self.baseline.initial_state() if self.carries_state else ()

    def gradient_parts(self, tape, scalar, evaluation, sources):
        """The loss's gradients, and for a stateful baseline its parts too."""
        if not self.carries_state:
            return tape.gradient(scalar, sources)
        loss = evaluation.loss
        *gradients, upstream = tape.gradient(scalar, [*sources, loss])
        score = [None] * len(gradients)
        if upstream is not None:
            density = getattr(evaluation.log_densities, self.score_density)
            num_draws = tf.cast(tf.shape(density)[0], density.dtype)
            weights = tf.cast(upstream, density.dtype) / num_draws  # W_s
            score = tape.gradient(
                density,
                sources,
                output_gradients=tf.broadcast_to(weights, tf.shape(density)),
            )
        mean = tf.reduce_mean(tf.stop_gradient(loss))
        return {"gradients": gradients, "score": list(score), "mean": mean}

    def combine(self, parts, state):
        """`gradients - b score` with `b` from `state`, and the state updated."""
        if not self.carries_state:
            return parts, state
        b = self.baseline.value(state)
        grads = [
            g
            if g is None or v is None
            else dense_gradient(g) - tf.cast(b, g.dtype) * dense_gradient(v)
            for g, v in zip(parts["gradients"], parts["score"], strict=True)
        ]
        return grads, self.baseline.updated(state, parts["mean"])


def make_baseline(baseline, decay=0.9):
    """The baseline object for a `baseline=` argument.

    Raises:
      TypeError: if `baseline` is not None, a known name or a callable.
      ValueError: if `decay` is not in [0, 1).
    """
    if isinstance(baseline, Baseline):
        return baseline
    if baseline is None:
        return NoBaseline()
    if isinstance(baseline, str):
        return _named_baseline(baseline, decay)
    if callable(baseline):
        return CallableBaseline(baseline)
    raise TypeError(
        "`baseline` must be None, 'leave_one_out', 'moving_average' or a "
        f"callable; got {baseline!r} of type {type(baseline).__name__}."
    )


def _named_baseline(baseline, decay):
    if baseline == "leave_one_out":
        return LeaveOneOut()
    if baseline == "auto":
        return LeaveOneOut(allow_single_draw=True)
    if baseline == "moving_average":
        if not isinstance(decay, (int, float)) or isinstance(decay, bool):
            raise TypeError(f"`decay` must be a float in [0, 1); got {decay!r}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`decay` must be in [0, 1); got {decay}.")
        return MovingAverage(float(decay))
    raise ValueError(
        "`baseline` must be None, 'leave_one_out', 'moving_average', 'auto' "
        f"or a callable; got the string {baseline!r}."
    )


def score_term(f, baseline, score):
    """Value-neutral surrogate: gradient `stop(f - b) grad score` (+ baseline fit)."""
    b = baseline(f)
    signal = tf.stop_gradient(f - b)
    term = signal * score
    fit = baseline.fit_term(signal, b)
    if fit is not None:
        term += fit
    return term - tf.stop_gradient(term)
