"""Per-activation normalization, the official `Norm` (flows.py:328-365, 69-83).

Unlike Glow's actnorm (one scale per channel), every activation has its own scale and bias:

    y = x * g + b,   g, b of shape [H, W, C],   g clamped at 1e-10 (the code's max(g, 1e-10))
    log|det| = sum(log g)                        per example
    x = (y - b) / g

Data-dependent init (inside tfglow.actnorm.data_dependent_init), from the batch x it sees:
    g = 1 / sqrt(var + 1e-8),  b = -mean * g     (biased moments over the batch axis)
so that y has zero mean and unit variance per activation on that batch. Computes in the
input's dtype (float64 in the model's exact encode/decode). The official code
uses rank 0's statistics; as tfglow's actnorm we average them over replicas.
"""
import tensorflow as tf

from tfglow.actnorm import ddi_active, ddi_mean_fn
from tfglow.flow import FlowLayer, per_example
from tfglow.flowpp.pair import Parallel

MIN_SCALE = 1e-10


class ActivationNorm(FlowLayer):
    """y = x * max(g, 1e-10) + b per activation; x [B, H, W, C], g and b [H, W, C]."""

    def build(self, input_shape):
        shape = tuple(int(s) for s in input_shape[1:])
        self.g = self.add_weight(shape=shape, initializer="ones", name="g")
        self.b = self.add_weight(shape=shape, initializer="zeros", name="b")
        self.built = True

    def initialize_from(self, x):
        mean_fn = ddi_mean_fn()
        mean = mean_fn(tf.reduce_mean(x, axis=0))
        var = mean_fn(tf.reduce_mean(tf.square(x - mean), axis=0))
        g = tf.math.rsqrt(var + 1e-8)
        self.g.assign(g)
        self.b.assign(-mean * g)

    def scale(self):
        return tf.maximum(self.g, MIN_SCALE)

    def forward(self, x, **cond):
        if ddi_active():
            self.initialize_from(x)
        g, b = tf.cast(self.scale(), x.dtype), tf.cast(self.b, x.dtype)
        return x * g + b, per_example(tf.reduce_sum(tf.math.log(g)), x)

    def inverse(self, y, **cond):
        g, b = tf.cast(self.scale(), y.dtype), tf.cast(self.b, y.dtype)
        return (y - b) / g, per_example(-tf.reduce_sum(tf.math.log(g)), y)


def pair_norm(name="norm"):
    """The official Norm on a pair: one ActivationNorm per half."""
    return Parallel(ActivationNorm(name=f"{name}0"), ActivationNorm(name=f"{name}1"), name=name)
