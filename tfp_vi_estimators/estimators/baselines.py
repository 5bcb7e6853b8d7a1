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

__all__ = [
    "Baseline",
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
    """

    min_sample_size = 1

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

    The state lives in two variables created with the object (never inside a
    traced loss): the average, one entry per batch member (its shape is set
    by the first update), and the number of updates. They are kept in
    float64 and read in the loss's dtype, which is exact for float32 and
    float64 losses alike. Reuse the object across steps.
    """

    def __init__(self, decay):
        self.decay = decay
        with tf.init_scope():
            self._average = tf.Variable(
                tf.zeros([], tf.float64),
                trainable=False,
                shape=tf.TensorShape(None),
                name="baseline_average",
            )
            self._steps = tf.Variable(
                0.0, dtype=tf.float64, trainable=False, name="baseline_steps"
            )

    def __call__(self, f):
        f = tf.stop_gradient(f)
        decay = tf.cast(self.decay, f.dtype)
        average = tf.cast(self._average.read_value(), f.dtype)
        correction = 1.0 - decay ** tf.cast(self._steps.read_value(), f.dtype)
        baseline = tf.math.divide_no_nan(average, correction)
        with tf.control_dependencies([baseline]):
            updated = decay * average + (1.0 - decay) * tf.reduce_mean(f, 0)
            self._average.assign(tf.cast(updated, tf.float64))
            self._steps.assign_add(1.0)
        return tf.broadcast_to(baseline, tf.shape(f))

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
