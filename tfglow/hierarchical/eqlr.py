"""Equalized-learning-rate convolution and dense layers (hflow network.py:776-863, MyConv/MyLinear).

The weight is stored as w ~ N(0, 1) / lr_mul and used as w * he * lr_mul with
he = gain / sqrt(fan_in); the bias is stored at 0 (dense: bias_init / lr_mul) and used times
lr_mul. A step of an optimizer on the stored value thus moves the used weight lr_mul times as
far: lr_mul is a per-layer learning-rate multiplier (10 for encoders and decoders in hflow).

Gains: leaky ReLU (slope 0.1) sqrt(2 / (1 + 0.1^2)), tanh 5/3, linear 1. As the code, the dense
layer gives every non-linear activation (tanh too) the leaky-ReLU gain.

`group` says which of the three learning-rate groups the layer belongs to ("encoders",
"decoders", "flows"), as the code's name rule (network.py:1655-1679) would place it.
"""
import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf

from tfglow.flow import constant_initializer

LRELU_SLOPE = 0.1
_state = threading.local()


@contextlib.contextmanager
def zero_init():
    """Layers built inside start from zeros instead of random draws: a fast build for counting
    parameters or restoring weights (the 256 px preset builds in a fraction of the time)."""
    previous = getattr(_state, "zero", False)
    _state.zero = True
    try:
        yield
    finally:
        _state.zero = previous
GROUPS = ("flows", "decoders", "encoders")


def activate(x, nonlin):
    if nonlin == "linear":
        return x
    if nonlin == "tanh":
        return tf.tanh(x)
    if nonlin == "lrelu":
        return tf.nn.leaky_relu(x, alpha=LRELU_SLOPE)
    raise ValueError(f"nonlin={nonlin!r} must be linear, tanh or lrelu")


def gain(nonlin, dense=False):
    if nonlin == "linear":
        return 1.0
    if nonlin == "tanh" and not dense:
        return 5.0 / 3.0
    return float(np.sqrt(2.0 / (1.0 + LRELU_SLOPE ** 2)))


class EqConv2D(keras.layers.Layer):
    """k x k convolution, zero SAME padding, [B, H, W, c_in] -> [B, H, W, c_out] (see module doc).

    use_bias=False mirrors MyConv(no_bias=True): the bias variable exists (and is counted) but is
    multiplied by 0. dense=True gives MyLinear's gains (the 1x1 maps hflow applies to vectors).
    """

    def __init__(self, c_in, c_out, kernel=1, lr_mul=1.0, nonlin="lrelu", zero_init=False,
                 use_bias=True, bias_init=0.0, dense=False, group="flows", rng=None, **kwargs):
        super().__init__(**kwargs)
        self.c_in, self.c_out, self.kernel = int(c_in), int(c_out), int(kernel)
        self.lr_mul, self.nonlin, self.group = float(lr_mul), nonlin, group
        self.he = gain(nonlin, dense) / np.sqrt(self.c_in * self.kernel ** 2)
        self.bias_mul = self.lr_mul if use_bias else 0.0
        shape = (self.kernel, self.kernel, self.c_in, self.c_out)
        rng = rng if rng is not None else np.random.default_rng()
        if zero_init or getattr(_state, "zero", False):
            init = "zeros"
        else:
            init = constant_initializer(
                rng.standard_normal(shape, dtype=np.float32) / np.float32(self.lr_mul))
        self.w = self.add_weight(shape=shape, name="w", initializer=init)
        b = np.full((self.c_out,), bias_init / self.lr_mul, np.float32)
        self.b = self.add_weight(shape=(self.c_out,), name="b", initializer=constant_initializer(b))
        self.built = True

    def call(self, x):
        w = tf.cast(self.w, x.dtype) * (self.he * self.lr_mul)
        if self.kernel == 1:
            y = tf.einsum("bhwi,io->bhwo", x, w[0, 0])
        else:
            y = tf.nn.conv2d(x, w, 1, "SAME")
        return activate(y + tf.cast(self.b, x.dtype) * self.bias_mul, self.nonlin)


def eq_dense(c_in, c_out, lr_mul=1.0, nonlin="lrelu", bias_init=0.0, **kwargs):
    """MyLinear as a 1x1 EqConv2D on [B, 1, 1, c] (same parameters, gains and map)."""
    return EqConv2D(c_in, c_out, 1, lr_mul, nonlin, bias_init=bias_init, dense=True, **kwargs)
