"""Coupling layers (Glow section 3.3, Table 1 row 3; flow_coupling 0 and 1), as the original.

The input [B, H, W, C] is split into channel halves z1 = x[..., :C/2] (kept) and
z2 = x[..., C/2:] (transformed), conditioned on z1 through NN() (tfglow.nn.CouplingNN).

Additive (flow_coupling 0; NICE):
    y2 = z2 + NN(z1)                                   log|det| = 0
Affine (flow_coupling 1). The original departs from the paper's exp(log s) in two ways that
change the numbers, and we mirror both: the scale is a shifted sigmoid, and the shift is added
before scaling:
    h = NN(z1);  shift = h[..., 0::2];  scale = sigmoid(h[..., 1::2] + 2)
    y2 = (z2 + shift) * scale                          log|det| = sum(log scale)
    z2 = y2 / scale - shift
log(scale) is computed as log_sigmoid(h + 2), which equals log(sigmoid(h + 2)) but does not
underflow to -inf for very negative h.
"""
import tensorflow as tf

from tfglow.actnorm import ddi_active
from tfglow.flow import FlowLayer, per_example, sum_except_batch
from tfglow.nn import CouplingNN


def split_channels(x):
    """[B, H, W, C] -> (x[..., :C/2], x[..., C/2:])."""
    c = int(x.shape[-1])
    # tf.split, not slicing: split's gradient is one concat. The gradients of channel-axis
    # slices (StridedSliceGrad, these and the kernel slices now in conv.prepare_kernel)
    # took ~5% of a cifar10 train step's op time on CPU.
    return tuple(tf.split(x, [c // 2, c - c // 2], axis=-1))


class _Coupling(FlowLayer):
    n_out_factor = 1

    def __init__(self, width, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self._rng = rng

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % 2:
            raise ValueError(f"{self.name}: coupling needs an even channel count, got {channels}")
        self.nn = CouplingNN(self.width, self.n_out_factor * (channels // 2), rng=self._rng,
                             name="f1")
        self.nn.build(tuple(input_shape[:-1]) + (channels // 2,))


    # Step protocol (tfglow.scan): NN()'s weights, prepared once; the same for both directions.
    def raw_weights(self):
        return self.nn.raw_weights()

    def prepare(self, raw, inverse=False):
        return self.nn.prepare(raw, deinterleaved=self.n_out_factor == 2)

    def forward(self, x, **cond):
        if ddi_active():  # NN()'s actnorms initialise from their inputs, through call
            h = self.nn.call(split_channels(x)[0], deinterleaved=self.n_out_factor == 2)
            return self._forward(h, x)
        return self.forward_with(self.prepare(self.raw_weights()), x)

    def inverse(self, y, **cond):
        return self.inverse_with(self.prepare(self.raw_weights(), inverse=True), y)

    def forward_with(self, prepared, x):
        return self._forward(self.nn.apply(prepared, split_channels(x)[0]), x)

    def inverse_with(self, prepared, y):
        return self._inverse(self.nn.apply(prepared, split_channels(y)[0]), y)


class AdditiveCoupling(_Coupling):
    """y = concat(z1, z2 + NN(z1)); volume-preserving."""

    def _forward(self, h, x):
        z1, z2 = split_channels(x)
        return tf.concat([z1, z2 + h], axis=-1), per_example(0.0, x)

    def _inverse(self, h, y):
        z1, z2 = split_channels(y)
        return tf.concat([z1, z2 - h], axis=-1), per_example(0.0, y)


class AffineCoupling(_Coupling):
    """y = concat(z1, (z2 + shift) * sigmoid(raw + 2)) with (shift, raw) interleaved in NN(z1).

    NN()'s output columns are prepared deinterleaved: h = [shift, raw] (tfglow.nn)."""

    n_out_factor = 2

    @staticmethod
    def _shift_and_log_scale(h):
        shift, raw = tf.split(h, 2, axis=-1)  # NN(z1)[..., 0::2], NN(z1)[..., 1::2]
        return shift, tf.math.log_sigmoid(raw + 2.0)

    def _forward(self, h, x):
        z1, z2 = split_channels(x)
        shift, log_scale = self._shift_and_log_scale(h)
        y2 = (z2 + shift) * tf.exp(log_scale)
        return tf.concat([z1, y2], axis=-1), sum_except_batch(log_scale)

    def _inverse(self, h, y):
        z1, y2 = split_channels(y)
        shift, log_scale = self._shift_and_log_scale(h)
        z2 = y2 * tf.exp(-log_scale) - shift
        return tf.concat([z1, z2], axis=-1), -sum_except_batch(log_scale)
