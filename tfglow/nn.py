"""The coupling network NN() of Glow section 3.3 and its building blocks, as the original.

    NN(h) = Conv2DZeros_3x3( ReLU( Conv2D_1x1( ReLU( Conv2D_3x3(h) ) ) ) )

Conv2D: no bias, weights ~ N(0, 0.05), followed by an ActNorm (data-dependent init).
Conv2DZeros / LinearZeros: weights and bias start at 0, output scaled by exp(3 * logs) with a
per-channel `logs` starting at 0, so NN() starts at exactly 0 (the coupling is the identity).
3x3 convolutions use the original's "edge padding" (tfglow.conv.edge_padded_conv_flat), so
their kernels are [3, 3, C + 1, width].

Outside data-dependent init, Conv2D folds its ActNorm into the convolution:

    (conv(x, W) + b) * s  =  conv(x, W * s) + b * s,      s = exp(logs)  [width]

(equal up to float rounding), so the hidden layers are matmul + bias + ReLU, which TensorFlow
fuses, instead of three extra passes over the widest activations.

Mixed precision: `CouplingNN.nn_dtype` (float32 by default; tfglow.Glow(precision=
"mixed_bfloat16") sets bfloat16) is the dtype of its convolutions. Variables stay float32
and are cast where used; NN() returns float32, so the coupling's scale, shift and
log-determinant are float32. The coupling stays exactly invertible: decoding recomputes NN()
on the same z1 with the same arithmetic.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.actnorm import ActNorm, ddi_active
from tfglow.conv import (conv2d_same_flat, conv_prepared_flat, edge_padded_conv_flat,
                         prepare_kernel, unflat)
from tfglow.flow import constant_initializer


def deinterleave(t):
    """Reorders the last axis [c0, c1, c2, c3, ...] -> [c0, c2, ..., c1, c3, ...] (0::2 then 1::2).

    As reshape and transpose, whose gradients are dense (tf.gather's would be IndexedSlices).
    """
    lead = [int(d) for d in t.shape[:-1]]
    n = int(t.shape[-1])
    pairs = tf.reshape(t, lead + [n // 2, 2])
    perm = list(range(len(lead))) + [len(lead) + 1, len(lead)]
    return tf.reshape(tf.transpose(pairs, perm), lead + [n])


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
        channels = int(input_shape[-1])
        kh, kw = self.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"{self.name}: kernel_size {self.kernel_size} must be odd")
        shape = (kh, kw, channels + (1 if self.edge_padded else 0), self.filters)
        self.kernel = self.add_weight(shape=shape, name="W", initializer=self._kernel_init(shape))

    def convolve_flat(self, x, kernel=None):
        """x [B, H, W, C] -> [B * H * W, filters], edge-padded as the original."""
        kernel = self.kernel if kernel is None else kernel
        if self.edge_padded:
            return edge_padded_conv_flat(x, kernel)
        return conv2d_same_flat(x, kernel)

    def convolve(self, x, kernel=None):
        """x [B, H, W, C] -> [B, H, W, filters]."""
        return unflat(self.convolve_flat(x, kernel), x, self.filters)

    def prepare_kernel(self, kernel):
        """A kernel [..., kh, kw, C(+1), D] as the operands of convolve_prepared_flat."""
        return prepare_kernel(kernel, self.edge_padded)

    def convolve_prepared_flat(self, x, operands):
        """As convolve_flat, from prepare_kernel's operands -> [B * H * W, D]."""
        return conv_prepared_flat(x, operands, self.kernel_size, self.filters, self.edge_padded)


class Conv2D(_EdgePaddedConv):
    """Bias-free convolution with N(0, 0.05) weights followed by ActNorm (original `conv2d`)."""

    def _kernel_init(self, shape):
        rng = self._rng if self._rng is not None else np.random.default_rng()
        return constant_initializer(rng.normal(0.0, 0.05, size=shape).astype(np.float32))

    def build(self, input_shape):
        super().build(input_shape)
        self.actnorm = ActNorm(name="actnorm")
        self.actnorm.build(tuple(input_shape[:-1]) + (self.filters,))

    def raw_weights(self):
        """(W, actnorm bias, actnorm logs / logscale_factor) as tensors."""
        return (tf.convert_to_tensor(self.kernel), *self.actnorm.raw_weights())

    def prepare(self, raw, dtype=tf.float32):
        """(operands of W * s [..., kh, kw, C(+1), D] (prepare_kernel), b * s [..., D]) in
        `dtype`, s = exp(actnorm logs): the actnorm folded into the convolution (module
        docstring)."""
        kernel, bias, logs = raw[0], *self.actnorm.prepare(raw[1:])
        scale = tf.exp(logs)
        kernel = tf.cast(kernel * scale[..., None, None, None, :], dtype)
        return self.prepare_kernel(kernel), tf.cast(bias * scale, dtype)

    def apply(self, prepared, x, relu=False):
        """[B, H, W, C] -> [B, H, W, filters] in the dtype of x, from `prepare`d weights."""
        operands, bias = prepared
        y2 = tf.nn.bias_add(self.convolve_prepared_flat(x, operands), bias)
        return unflat(tf.nn.relu(y2) if relu else y2, x, self.filters)

    def call(self, x, relu=False):
        """actnorm(conv(x)), optionally followed by ReLU; [B, H, W, C] -> [B, H, W, filters]
        in the dtype of x (the variables are cast to it)."""
        if ddi_active():  # statistics in float32
            y = tf.cast(self.convolve(x, tf.cast(self.kernel, x.dtype)), tf.float32)
            y = self.actnorm.forward(y)[0]
            return tf.cast(tf.nn.relu(y) if relu else y, x.dtype)
        return self.apply(self.prepare(self.raw_weights(), x.dtype), x, relu)


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

    def raw_weights(self):
        return tuple(tf.convert_to_tensor(v) for v in (self.kernel, self.bias, self.logs))

    def prepare(self, raw, dtype=tf.float32, deinterleaved=False):
        """(operands of W [..., kh, kw, C+1, D] in `dtype` (prepare_kernel), b [..., D], logs
        [..., D]); with deinterleaved, the output columns reordered as `deinterleave` (see
        call_deinterleaved)."""
        kernel, bias, logs = (deinterleave(t) for t in raw) if deinterleaved else raw
        return self.prepare_kernel(tf.cast(kernel, dtype)), bias, logs

    def apply(self, prepared, x):
        """float32 [B, H, W, D]; the convolution runs in the dtype of x."""
        operands, bias, logs = prepared
        operands = tuple(tf.cast(t, x.dtype) for t in operands)
        y2 = tf.cast(self.convolve_prepared_flat(x, operands), tf.float32)
        y2 = tf.nn.bias_add(y2, bias) * tf.exp(logs * self.logscale_factor)
        return unflat(y2, x, self.filters)

    def call(self, x):
        return self.apply(self.prepare(self.raw_weights(), x.dtype), x)

    def call_deinterleaved(self, x):
        """(y[..., 0::2], y[..., 1::2]) of y = call(x), each [B, H, W, filters / 2].

        The original interleaves (shift, scale) and (mean, logs) in the output channels; we
        permute the weights' output columns instead of slicing the output with stride 2.
        """
        y = self.apply(self.prepare(self.raw_weights(), x.dtype, deinterleaved=True), x)
        return tf.split(y, 2, axis=-1)


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
        self.nn_dtype = tf.float32
        self.conv1 = Conv2D(width, (3, 3), rng=rng, name="l_1")
        self.conv2 = Conv2D(width, (1, 1), rng=rng, name="l_2")
        self.conv_out = Conv2DZeros(n_out, (3, 3), name="l_last")

    def build(self, input_shape):
        hidden = tuple(input_shape[:-1]) + (self.width,)
        self.conv1.build(input_shape)
        self.conv2.build(hidden)
        self.conv_out.build(hidden)

    def hidden(self, h):
        # The sublayers' .call directly: Keras' __call__ would cast h back to float32, and
        # skipping it shortens tracing (~200 coupling networks in a deep model).
        h = tf.cast(h, self.nn_dtype)
        return self.conv2.call(self.conv1.call(h, relu=True), relu=True)

    def call(self, h, deinterleaved=False):
        """float32 [B, H, W, n_out]; deinterleaved: [NN(h)[..., 0::2], NN(h)[..., 1::2]]."""
        h = self.hidden(h)
        out = self.conv_out
        return out.apply(out.prepare(out.raw_weights(), h.dtype, deinterleaved), h)

    def call_deinterleaved(self, h):
        """(NN(h)[..., 0::2], NN(h)[..., 1::2]), float32."""
        return tf.split(self.call(h, deinterleaved=True), 2, axis=-1)

    # Step protocol (tfglow.scan), as `call` from weights prepared once for one or many steps.
    def raw_weights(self):
        return (self.conv1.raw_weights(), self.conv2.raw_weights(), self.conv_out.raw_weights())

    def prepare(self, raw, deinterleaved=False):
        """Folded hidden kernels and the output layer's weights, in nn_dtype ([...] leading)."""
        return (self.conv1.prepare(raw[0], self.nn_dtype), self.conv2.prepare(raw[1], self.nn_dtype),
                self.conv_out.prepare(raw[2], self.nn_dtype, deinterleaved))

    def apply(self, prepared, h):
        """float32 [B, H, W, n_out] (deinterleaved if prepared so)."""
        h = tf.cast(h, self.nn_dtype)
        h = self.conv2.apply(prepared[1], self.conv1.apply(prepared[0], h, relu=True), relu=True)
        return self.conv_out.apply(prepared[2], h)
