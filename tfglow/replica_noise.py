"""Random draws of one replica's rows of the global batch, so that training is independent of
how the global batch is split over replicas (one device with batch B == two replicas with B/2).

Inside `replica_batch(num_replicas, index)` (opened by the train step in each replica),
`rows(draw, shape, seed)` draws for the global batch [num_replicas * b, ...] and returns this
replica's b rows [index * b, (index + 1) * b). A draw is keyed by its seed alone (the trainer
folds in the step), so a resumed run and a run on other replicas draw the same numbers for
the same image of the global batch. Used for the dequantisation noise (tfglow.training.step)
and Flow++'s dropout masks (tfglow.flowpp.conditioner).
"""
import contextlib
import threading

import tensorflow as tf

# Thread-local: MirroredStrategy traces each replica's function in its own thread.
_state = threading.local()


@contextlib.contextmanager
def replica_batch(num_replicas, index):
    """Draws inside come from the global batch of num_replicas replicas; this is `index`."""
    previous = getattr(_state, "slice", None)
    _state.slice = (int(num_replicas), index)
    try:
        yield
    finally:
        _state.slice = previous


def active():
    return getattr(_state, "slice", None) is not None


def rows(draw, shape, seed, num_replicas=None, index=None):
    """draw(global shape, seed)[index * b:(index + 1) * b] for shape [b, ...] (a tensor).

    num_replicas / index default to the open replica_batch (1 replica, index 0 without one).
    """
    n, i = getattr(_state, "slice", None) or (1, 0)
    n = n if num_replicas is None else num_replicas
    i = i if index is None else index
    shape = tf.convert_to_tensor(shape)
    b = shape[0]
    full = draw(tf.concat([[b * n], shape[1:]], axis=0), seed)
    start = tf.cast(i, tf.int32) * b
    return full[start:start + b]
