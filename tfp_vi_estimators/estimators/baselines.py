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

__all__ = ["make_baseline"]


class NoBaseline:
    min_sample_size = 1

    def __call__(self, f):
        return tf.zeros_like(f)

    def __repr__(self):
        return "None"


class LeaveOneOut:
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


class MovingAverage:
    """Bias-corrected exponential moving average of earlier steps' mean loss.

    The state lives in variables this object owns, created on first use
    (outside any `tf.function` graph), one entry per batch member.
    """

    min_sample_size = 1

    def __init__(self, decay):
        self.decay = decay
        self._average = None
        self._steps = None

    def _create_state(self, f):
        with tf.init_scope():
            self._average = tf.Variable(
                tf.zeros(f.shape[1:], f.dtype), trainable=False, name="baseline_average"
            )
            self._steps = tf.Variable(
                0.0, dtype=f.dtype, trainable=False, name="baseline_steps"
            )

    def __call__(self, f):
        if self._average is None:
            self._create_state(f)
        f = tf.stop_gradient(f)
        decay = tf.cast(self.decay, f.dtype)
        steps = self._steps.read_value()
        correction = 1.0 - decay**steps
        baseline = tf.math.divide_no_nan(self._average.read_value(), correction)
        with tf.control_dependencies([baseline]):
            self._average.assign(
                decay * self._average + (1.0 - decay) * tf.reduce_mean(f, 0)
            )
            self._steps.assign_add(1.0)
        return tf.broadcast_to(baseline, tf.shape(f))

    def __repr__(self):
        return f"'moving_average' (decay={self.decay})"


class CallableBaseline:
    """`baseline()`: a user's (possibly learned) baseline, trained alongside.

    The estimator adds the value-neutral term `-stop(f - b) * b`,
    whose gradient is that of `1/2 (f - b)^2`, so an optimizer that updates
    the baseline's variables with the rest fits `b` to `E[f]`.
    """

    min_sample_size = 1

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, f):
        return tf.broadcast_to(tf.cast(self.fn(), f.dtype), tf.shape(f))

    def __repr__(self):
        return repr(self.fn)


def make_baseline(baseline, decay=0.9):
    """The baseline object for a `baseline=` argument.

    Raises:
      TypeError: if `baseline` is not None, a known name or a callable.
      ValueError: if `decay` is not in [0, 1).
    """
    if isinstance(baseline, (NoBaseline, LeaveOneOut, MovingAverage, CallableBaseline)):
        return baseline
    if baseline is None:
        return NoBaseline()
    if isinstance(baseline, str):
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
    if callable(baseline):
        return CallableBaseline(baseline)
    raise TypeError(
        "`baseline` must be None, 'leave_one_out', 'moving_average' or a "
        f"callable; got {baseline!r} of type {type(baseline).__name__}."
    )


def score_term(f, baseline, score):
    """Value-neutral surrogate: gradient `stop(f - b) grad score` (+ baseline fit)."""
    b = baseline(f)
    signal = tf.stop_gradient(f - b)
    term = signal * score
    if isinstance(baseline, CallableBaseline):
        term += -signal * b  # gradient of 1/2 (f - b)^2 with respect to b
    return term - tf.stop_gradient(term)
