"""Gradients as dense tensors."""

import tensorflow as tf


def dense_gradient(gradient):
    """`gradient`, made dense if it is a `tf.IndexedSlices` (`None` stays `None`)."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient
