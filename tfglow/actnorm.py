"""Actnorm (Glow section 3.1, Table 1 row 1): per-channel affine map with data-dependent init.

    y = (x + b) * exp(logs)            (the original's order: centre, then scale)
    x = y * exp(-logs) - b
    log|det dy/dx| = H * W * sum(logs)   for x of shape [B, H, W, C];  sum(logs) for [B, C]

As the original, the variable holds logs / logscale_factor (3) and is multiplied back when
used, and the data-dependent initialisation sets, from the first batch it sees,

    b = -mean(x),   logs = log(1 / (sqrt(mean((x + b)^2)) + 1e-6))

so that y has zero mean and unit variance per channel. Unlike the original (which used one
worker's statistics), the moments are averaged over all replicas of a tf.distribute strategy.
"""
import contextlib
import threading

import tensorflow as tf

from tfglow.flow import FlowLayer, per_example

_state = threading.local()


def cross_replica_mean(t):
    """Mean of t over the replicas of the current tf.distribute replica context (if any)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, t)
    return t


@contextlib.contextmanager
def data_dependent_init(mean_fn=cross_replica_mean, workers=None):
    """Within this context every ActNorm.forward (re)initialises itself from its input.

    mean_fn averages a statistic over workers: tf.distribute replicas by default; pass e.g.
    a Horovod allreduce-average for Horovod workers, and their number as `workers` (an
    unbiased variance needs the global count). Equal batch sizes per worker assumed.
    """
    previous = getattr(_state, "mean_fn", None), getattr(_state, "workers", None)
    _state.mean_fn, _state.workers = mean_fn, workers
    try:
        yield
    finally:
        _state.mean_fn, _state.workers = previous


def ddi_workers():
    """How many workers mean_fn averages over: `workers` of data_dependent_init, else the
    replicas of the current tf.distribute replica context (1 outside one)."""
    workers = getattr(_state, "workers", None)
    if workers:
        return int(workers)
    ctx = tf.distribute.get_replica_context()
    return ctx.num_replicas_in_sync if ctx is not None else 1


def ddi_active():
    return getattr(_state, "mean_fn", None) is not None


def ddi_mean_fn():
    """The statistic-averaging function of the active data_dependent_init context (or the
    tf.distribute replica mean outside one), for other layers with a data-dependent init."""
    return getattr(_state, "mean_fn", None) or cross_replica_mean


class ActNorm(FlowLayer):
    """Per-channel scale and bias; input [B, H, W, C] (or [B, C]); see module docstring."""

    def __init__(self, logscale_factor=3.0, **kwargs):
        super().__init__(**kwargs)
        self.logscale_factor = float(logscale_factor)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")
        # Stored divided by logscale_factor, as the original.
        self.logs_scaled = self.add_weight(shape=(channels,), initializer="zeros", name="logs")
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                           name="initialized")

    @property
    def logs(self):
        return self.logs_scaled * self.logscale_factor

    def _spatial_size(self, x):
        return 1 if x.shape.rank == 2 else int(x.shape[1]) * int(x.shape[2])

    def initialize_from(self, x):
        """Sets b and logs from the moments of x (all axes but channels); returns the ops."""
        axes = list(range(x.shape.rank - 1))
        mean_fn = getattr(_state, "mean_fn", None) or cross_replica_mean
        mean = mean_fn(tf.reduce_mean(x, axes))
        var = mean_fn(tf.reduce_mean(tf.square(x - mean), axes))
        logs = tf.math.log(1.0 / (tf.sqrt(var) + 1e-6))
        self.bias.assign(-mean)
        self.logs_scaled.assign(logs / self.logscale_factor)
        self.initialized.assign(1.0)

    # Step protocol (tfglow.scan): the variables' values, weights prepared from them (also
    # for several steps at once, stacked along leading axes), and the map given prepared weights.
    def raw_weights(self):
        """(bias [C], logs / logscale_factor [C]) as tensors."""
        return tf.convert_to_tensor(self.bias), tf.convert_to_tensor(self.logs_scaled)

    def prepare(self, raw, inverse=False):
        """(bias, logs), each [..., C]; the same for both directions."""
        bias, logs_scaled = raw
        return bias, logs_scaled * self.logscale_factor

    def forward_with(self, prepared, x):
        bias, logs = prepared
        y = (x + bias) * tf.exp(logs)
        return y, per_example(self._spatial_size(x) * tf.reduce_sum(logs), x)

    def inverse_with(self, prepared, y):
        bias, logs = prepared
        x = y * tf.exp(-logs) - bias
        return x, per_example(-self._spatial_size(y) * tf.reduce_sum(logs), y)

    def forward(self, x, **cond):
        if ddi_active():
            self.initialize_from(x)
        return self.forward_with(self.prepare(self.raw_weights()), x)

    def inverse(self, y, **cond):
        return self.inverse_with(self.prepare(self.raw_weights(), inverse=True), y)
