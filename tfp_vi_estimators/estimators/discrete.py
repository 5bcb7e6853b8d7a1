"""Steps the discrete-latent estimators share, on `DiscretePart`s.

A `DiscretePart` holds a discrete part of the draw in canonical form,
`[S, K] + batch + units`, with a last axis of `C` categories for categorical
values: the logits `a` (live) and the values `b` (0/1 or one-hot). Per unit,

```none
Bernoulli:    log q(b) = b a - softplus(a),         d log q(b) / d a = b - sigmoid(a)
categorical:  log q(b) = sum_c b_c log_softmax(a)_c,  d log q(b) / d a = b - softmax(a)
```

Per-draw quantities are `[S] + batch`; `per_draw_sum` sums a part's tensor
over the particles and the units (and categories), `spread` broadcasts a
per-draw (or per-particle) tensor onto a part's shape.
"""

import tensorflow as tf

__all__ = [
    "group_mean",
    "per_draw_sum",
    "spread",
    "unit_log_prob",
    "unit_score",
]


def unit_log_prob(part, logits=None):
    """`log q(b)` per unit, `[S, K] + batch + units` (at `logits` if given)."""
    logits = part.logits if logits is None else logits
    if part.categorical:
        log_probs = tf.math.log_softmax(logits, axis=-1)
        return tf.reduce_sum(part.values * log_probs, axis=-1)
    return part.values * logits - tf.math.softplus(logits)


def unit_score(part, logits=None):
    """`d log q(b) / d a`, shaped like the logits (at `logits` if given)."""
    logits = part.logits if logits is None else logits
    if part.categorical:
        return part.values - tf.math.softmax(logits, axis=-1)
    return part.values - tf.sigmoid(logits)


def per_draw_sum(tensor, batch_rank):
    """Sums `[S, K] + batch + rest` over `K` and `rest`: `[S] + batch`."""
    rank = tensor.shape.rank
    return tf.reduce_sum(tensor, axis=[1, *range(2 + batch_rank, rank)])


def spread(tensor, like, batch_rank):
    """`tensor` (`[S] + batch` or `[S, K] + batch`) broadcastable onto `like`.

    A per-draw tensor gets a particle axis; both get trailing unit axes.
    """
    if tensor.shape.rank == 1 + batch_rank:
        tensor = tf.expand_dims(tensor, axis=1)
    trailing = like.shape.rank - tensor.shape.rank
    return tf.reshape(
        tensor, tf.concat([tf.shape(tensor), tf.ones([trailing], tf.int32)], 0)
    )


def group_mean(per_draw, group_size):
    """The mean over each group of `group_size` consecutive draws, per draw."""
    shape = tf.shape(per_draw)
    grouped = tf.reshape(per_draw, tf.concat([[-1, group_size], shape[1:]], 0))
    mean = tf.reduce_mean(grouped, axis=1, keepdims=True)
    return tf.reshape(tf.broadcast_to(mean, tf.shape(grouped)), shape)
