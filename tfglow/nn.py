"""The coupling network NN() of Glow section 3.3 and its building blocks, as the original.

    NN(h) = Conv2DZeros_3x3( ReLU( Conv2D_1x1( ReLU( Conv2D_3x3(h) ) ) ) )

Conv2D: no bias, weights ~ N(0, 0.05), followed by an ActNorm (data-dependent init).
Conv2DZeros / LinearZeros: weights and bias start at 0, output scaled by exp(3 * logs) with a
per-channel `logs` starting at 0, so NN() starts at exactly 0 (the coupling is the identity).

"Edge padding": the original pads 3x3 convolutions with zeros and appends one input channel
that is 1 on padded pixels and 0 inside, then convolves with VALID padding, so the kernel is
[3, 3, C + 1, width]. Convolution is linear in its input channels, so we compute the same as

    conv_SAME(x, W[:, :, :C]) + conv_VALID(indicator, W[:, :, C:])

where the second term is a [1, H, W, width] position-dependent bias, computed at batch 1 and
broadcast: no concatenation of a constant channel to every activation.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.actnorm import ActNorm
from tfglow.flow import constant_initializer


def edge_indicator(height, width, kh, kw):
    """[1, H + kh - 1, W + kw - 1, 1] float32: 1 on the zero-padded border, 0 inside."""
    a, b = (kh - 1) // 2, (kw - 1) // 2
    ind = np.ones((1, height + 2 * a, width + 2 * b, 1), np.float32)
    ind[:, a:a + height, b:b + width, :] = 0.0
    return ind


class _EdgePaddedConv(keras.layers.Layer):
    """A stride-1 convolution with the original's edge padding (kernel [kh, kw, C(+1), D])."""

    def __init__(self, filters, kernel_size, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size)
        self._rng = rng

    @property
    def edge_padded(self):
        return self.kernel_size != (1, 1)

    def _kernel_init(self, shape):
        raise NotImplementedError

    def build(self, input_shape):
        _, height, width, channels = (int(d) if d is not None else None for d in input_shape)
        kh, kw = self.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"{self.name}: kernel_size {self.kernel_size} must be odd")
        self.in_channels = channels
        shape = (kh, kw, channels + (1 if self.edge_padded else 0), self.filters)
        self.kernel = self.add_weight(shape=shape, name="W", initializer=self._kernel_init(shape))
        if self.edge_padded:
            self._indicator = edge_indicator(height, width, kh, kw)

    def convolve(self, x):
        """x [B, H, W, C] -> [B, H, W, filters], edge-padded as the original."""
        if not self.edge_padded:
            return tf.nn.conv2d(x, self.kernel, strides=1, padding="VALID")
        c = self.in_channels
        y = tf.nn.conv2d(x, self.kernel[:, :, :c], strides=1, padding="SAME")
        return y + tf.nn.conv2d(self._indicator, self.kernel[:, :, c:], strides=1, padding="VALID")


class Conv2D(_EdgePaddedConv):
    """Bias-free convolution with N(0, 0.05) weights followed by ActNorm (original `conv2d`)."""

    def _kernel_init(self, shape):
        rng = self._rng if self._rng is not None else np.random.default_rng()
        return constant_initializer(rng.normal(0.0, 0.05, size=shape).astype(np.float32))

    def build(self, input_shape):
        super().build(input_shape)
        self.actnorm = ActNorm(name="actnorm")
        self.actnorm.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, x):
        return self.actnorm.forward(self.convolve(x))[0]


class Conv2DZeros(_EdgePaddedConv):
    """(conv(x) + b) * exp(3 * logs), all parameters zero at init (original `conv2d_zeros`)."""

    def __init__(self, filters, kernel_size=(3, 3), logscale_factor=3.0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.logscale_factor = float(logscale_factor)

    def _kernel_init(self, shape):
        return "zeros"

    def build(self, input_shape):
        super().build(input_shape)
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="b")
        self.logs = self.add_weight(shape=(self.filters,), initializer="zeros", name="logs")

    def call(self, x):
        return (self.convolve(x) + self.bias) * tf.exp(self.logs * self.logscale_factor)


class LinearZeros(keras.layers.Layer):
    """(x @ W + b) * exp(3 * logs) for x [B, n_in], zero at init (original `linear_zeros`)."""

    def __init__(self, units, logscale_factor=3.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.logscale_factor = float(logscale_factor)

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(n_in, self.units), initializer="zeros", name="W")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="b")
        self.logs = self.add_weight(shape=(self.units,), initializer="zeros", name="logs")

    def call(self, x):
        return (x @ self.kernel + self.bias) * tf.exp(self.logs * self.logscale_factor)


class CouplingNN(keras.layers.Layer):
    """NN(): [B, H, W, C_in] -> [B, H, W, n_out] (see module docstring)."""

    def __init__(self, width, n_out, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.n_out = int(n_out)
        self.conv1 = Conv2D(width, (3, 3), rng=rng, name="l_1")
        self.conv2 = Conv2D(width, (1, 1), rng=rng, name="l_2")
        self.conv_out = Conv2DZeros(n_out, (3, 3), name="l_last")

    def build(self, input_shape):
        hidden = tuple(input_shape[:-1]) + (self.width,)
        self.conv1.build(input_shape)
        self.conv2.build(hidden)
        self.conv_out.build(hidden)

    def call(self, h):
        h = tf.nn.relu(self.conv1(h))
        h = tf.nn.relu(self.conv2(h))
        return self.conv_out(h)
