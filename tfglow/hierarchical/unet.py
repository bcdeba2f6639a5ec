"""The decoders' U-Net (hflow network.py:893-1000, `Unet`): conditioning predictor and the
refinement of the start/end biases.

    start 3x3 -> m x [IN?, 3x3, 3x3, down] -> bottom 1x1 -> m x [up, IN?, 3x3, 3x3, (+ skip)/sqrt 2]
    -> 3x3 (lrelu) -> 3x3 (linear)

with m = max(min(4, log2(res) - 2), 1) levels, widths int(c * base^i), anti-aliased resampling
above 8 px (when the level provides it) and bilinear resampling (align_corners False) at <= 8 px.
Shapes: [B, res, res, c_in] -> [B, res, res, c_out].
"""
import keras
import numpy as np

from tfglow.hierarchical.eqlr import EqConv2D
from tfglow.hierarchical.norm import instance_norm
from tfglow.hierarchical.resample import bilinear, downsample, upsample


def unet_depth(res):
    return max(min(4, int(np.log2(res)) - 2), 1)


class DecoderUNet(keras.layers.Layer):
    def __init__(self, c_in, c_out, res, base=1.5, antialias=True, instnorm=True, lr_mul=1.0,
                 group="decoders", rng=None, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.antialias, self.instnorm = unet_depth(res), antialias, instnorm
        ch = [int(c_in * base ** i) for i in range(self.depth + 1)]
        conv = dict(lr_mul=lr_mul, group=group, rng=rng)
        self.start = EqConv2D(c_in, c_in, 3, **conv, name="start")
        self.down = [EqConv2D(ch[i], ch[i + 1], 3, **conv, name=f"down{i}")
                     for i in range(self.depth)]
        self.down_b = [EqConv2D(ch[i + 1], ch[i + 1], 3, **conv, name=f"down_b{i}")
                       for i in range(self.depth)]
        self.bottom = EqConv2D(ch[-1], ch[-1], 1, **conv, name="bottom")
        self.up = [EqConv2D(ch[i + 1], ch[i], 3, **conv, name=f"up{i}")
                   for i in reversed(range(self.depth))]
        self.up_b = [EqConv2D(ch[i], ch[i], 3, **conv, name=f"up_b{i}")
                     for i in reversed(range(self.depth))]
        self.end_a = EqConv2D(c_in, c_in, 3, **conv, name="end_a")
        self.end_b = EqConv2D(c_in, c_out, 3, nonlin="linear", **conv, name="end_b")
        self.built = True

    def _down(self, x):
        if self.antialias and int(x.shape[1]) > 8:
            return downsample(x)
        return bilinear(x, int(x.shape[1]) // 2)

    def _up(self, x):
        if self.antialias and int(x.shape[1]) > 8:
            return upsample(x)
        return bilinear(x, 2 * int(x.shape[1]))

    def call(self, x):
        x = self.start(x)
        skips = [x]
        for a, b in zip(self.down, self.down_b):
            if self.instnorm:
                x = instance_norm(x)
            x = self._down(b(a(x)))
            skips.append(x)
        skips.pop()
        x = self.bottom(x)
        for a, b in zip(self.up, self.up_b):
            x = self._up(x)
            if self.instnorm:
                x = instance_norm(x)
            x = (b(a(x)) + skips.pop()) / np.sqrt(2.0)
        return self.end_b(self.end_a(x))
