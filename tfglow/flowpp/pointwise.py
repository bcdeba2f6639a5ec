"""The official `Pointwise` map (flows.py:368-420): a 1x1 convolution per half.

    y = x @ W,  W [C, C] initialised to I + 0.001 * N(0, 1) (the code's noisy identity),
    log|det| = H * W * log|det W| in float64,  x = y @ W^-1 (inverse in float64)

The same map as Glow's plain invertible 1x1 convolution (tfglow.invconv.InvConv1x1); it reuses
its float64 determinant (`log_abs_det`) and tfglow.conv's 1x1 matmul, and differs in the
initialisation. It computes in the input's dtype (float64 in the Jacobian tests and the exact encode/decode).
"""
import numpy as np
import tensorflow as tf

from tfglow.conv import conv1x1
from tfglow.flow import FlowLayer, constant_initializer, per_example
from tfglow.flowpp.pair import Parallel
from tfglow.invconv import log_abs_det


def _spatial(x):
    return int(x.shape[1]) * int(x.shape[2])


class NoisyIdentityConv1x1(FlowLayer):
    """y = x @ W per pixel, W initialised to I + noise * N(0, 1)."""

    def __init__(self, noise=0.001, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.noise = float(noise)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        channels = int(input_shape[-1])
        init = (np.eye(channels) + self.noise * self._rng.standard_normal((channels, channels)))
        self.kernel = self.add_weight(shape=(channels, channels), name="W",
                                      initializer=constant_initializer(init.astype(np.float32)))
        self.built = True

    def _logdet(self, w):
        return tf.cast(log_abs_det(w), w.dtype)

    def forward(self, x, **cond):
        w = tf.cast(self.kernel, x.dtype)
        return conv1x1(x, w), per_example(_spatial(x) * self._logdet(w), x)

    def inverse(self, y, **cond):
        w = tf.cast(self.kernel, y.dtype)
        w_inv = tf.cast(tf.linalg.inv(tf.cast(w, tf.float64)), w.dtype)
        return conv1x1(y, w_inv), per_example(-_spatial(y) * self._logdet(w), y)


def pair_pointwise(rng, name="pointwise"):
    """The official Pointwise on a pair: one noisy-identity 1x1 map per half."""
    return Parallel(NoisyIdentityConv1x1(rng=rng, name=f"{name}0"),
                    NoisyIdentityConv1x1(rng=rng, name=f"{name}1"), name=name)
