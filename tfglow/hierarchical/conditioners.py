"""Coupling networks: (x, conditioning) -> (s, b) of a masked affine coupling.

Both see x * visible (visible scaled by sqrt 2) and the level's conditioning tensor, and return
s clipped to +-3 and b to +-5, both zero outside the transformed part (hflow network.py:29-480).

ConvConditioner (CouplingCNN; channel splits, and every split at < 4 px):
    cond' = cond + 3x3(cond);  h = tanh(3x3([x * visible, cond']))  (no cond: tanh(k x k(x * visible)))
    h = IN(h) (res > 1) -> 3 x (k x k, lrelu) -> halves (h_s, h_b)
    s = 1x1(h_s) (zero-initialised);  b = 1x1(3x3(h_b))
  At 1x1 (the end block) every conv is a dense layer (k = 1), without IN, and the conditional
  input layer uses a leaky ReLU instead of tanh, as the code's MyLinear branch.

UNetConditioner (PoolingCouplingCNN; spatial splits S2/S4/S8 at >= 4 px):
    h = lrelu(3x3([x * visible, tanh(1x1(cond)) (half the channels)])) -> k x k (no cond: k x k(x * visible))
    -> k x k -> n x [down (x2 when `double`), IN, h' = 1x1(1x1(h)), h = 1x1([h, h'])]
    -> bottom -> n x [up, IN, h' = 1x1(1x1(h)), h = 1x1([h, h']), (h + skip) / sqrt 2] -> k x k
    -> halves: s = 1x1(3x3(h_s)), b = 1x1(3x3(h_b)) (both output convs zero-initialised)
  widths int(c * mult^i); the U-Net's inner convs are 1x1 (`reduced`, as every hflow preset);
  anti-aliased resampling above 4 px, bilinear (align_corners True) at <= 4 px.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.hierarchical.eqlr import EqConv2D
from tfglow.hierarchical.norm import instance_norm
from tfglow.hierarchical.resample import bilinear, downsample, upsample

S_CLIP, B_CLIP = 3.0, 5.0


class _Conditioner(keras.layers.Layer):
    def __init__(self, visible, transformed, **kwargs):
        super().__init__(**kwargs)
        self._visible = np.asarray(visible) * np.sqrt(2.0)
        self._transformed = np.asarray(transformed)

    def masks(self, dtype, given=None):
        """(visible * sqrt 2, transformed) [R, R, C]; `given` (a shared trace's) if not None."""
        if given is not None:
            return given
        return tf.constant(self._visible, dtype), tf.constant(self._transformed, dtype)

    def _outputs(self, s, b, transformed):
        return (tf.clip_by_value(s * transformed, -S_CLIP, S_CLIP),
                tf.clip_by_value(b * transformed, -B_CLIP, B_CLIP))


class ConvConditioner(_Conditioner):
    def __init__(self, channels, res, hidden, visible, transformed, cond_channels=None, kernel=3,
                 rng=None, **kwargs):
        super().__init__(visible, transformed, **kwargs)
        self.res, self.is_cond = int(res), cond_channels is not None
        dense = self.res == 1
        k = 1 if self.res < 2 else int(kernel)
        k3 = 1 if dense else 3
        conv = dict(dense=dense, rng=rng)
        c, h = int(channels), int(hidden)
        if self.is_cond:
            self.cond_pre = EqConv2D(cond_channels, cond_channels, k3, name="cond_preproc_a", **conv)
            self.cond_connect = EqConv2D(c + cond_channels, c, k3, name="conv_cond_connect",
                                         nonlin="lrelu" if dense else "tanh", **conv)
        else:
            self.conv0 = EqConv2D(c, c, k, nonlin="tanh", name="conv_0", **conv)
        self.conv1 = EqConv2D(c, h, k, name="conv_1", **conv)
        self.conv2 = EqConv2D(h, h, k, name="conv_2", **conv)
        self.conv3 = EqConv2D(h, h, k, name="conv_3", **conv)
        self.bias_a = EqConv2D(h // 2, h // 2, k3, name="conv_out_bias", **conv)
        self.bias_b = EqConv2D(h // 2, c, 1, nonlin="linear", name="conv_out_bias_b", **conv)
        self.scale = EqConv2D(h // 2, c, 1, nonlin="linear", zero_init=True,
                              name="conv_out_scale", **conv)
        self.built = True

    def call(self, x, cond=None, masks=None):
        visible, transformed = self.masks(x.dtype, masks)
        if self.is_cond:
            cond = cond + self.cond_pre(cond)
            h = self.cond_connect(tf.concat([x * visible, cond], -1))
        else:
            h = self.conv0(x * visible)
        if self.res > 1:
            h = instance_norm(h)
        h = self.conv3(self.conv2(self.conv1(h)))
        hs, hb = tf.split(h, 2, axis=-1)
        return self._outputs(self.scale(hs), self.bias_b(self.bias_a(hb)), transformed)


class UNetConditioner(_Conditioner):
    def __init__(self, channels, res, hidden, visible, transformed, cond_channels=None, kernel=3,
                 downscales=2, mult=2.0, double=False, rng=None, **kwargs):
        super().__init__(visible, transformed, **kwargs)
        self.res, self.is_cond = int(res), cond_channels is not None
        self.n_down, self.per_layer = int(downscales), 2 if double else 1
        c, h, k = int(channels), int(hidden), int(kernel)
        conv = dict(rng=rng)
        if self.is_cond:
            self.cond_pre = EqConv2D(cond_channels, cond_channels // 2, 1, nonlin="tanh",
                                     name="conv_cond_connect_pre", **conv)
            self.cond_connect = EqConv2D(c + cond_channels // 2, h, 3, name="conv_cond_connect_un",
                                         **conv)
            self.conv1 = EqConv2D(h, h, k, name="conv_1", **conv)
        else:
            self.conv1 = EqConv2D(c, h, k, name="conv_1", **conv)
        self.conv2 = EqConv2D(h, h, k, name="conv_2", **conv)
        self.conv3 = EqConv2D(h, h, k, name="conv_3", **conv)
        ch = [int(h * mult ** i) for i in range(self.n_down + 1)]
        ku = 1  # the U-Net's inner kernels: "reduced" in every hflow preset
        self.down = [EqConv2D(ch[i], ch[i + 1], ku, name=f"down{i}", **conv)
                     for i in range(self.n_down)]
        self.down_b = [EqConv2D(ch[i + 1], ch[i + 1], ku, name=f"down_b{i}", **conv)
                       for i in range(self.n_down)]
        self.down_c = [EqConv2D(ch[i] + ch[i + 1], ch[i + 1], ku, nonlin="linear",
                                name=f"down_c{i}", **conv) for i in range(self.n_down)]
        self.up = [EqConv2D(ch[i + 1], ch[i + 1], ku, name=f"up{i}", **conv)
                   for i in reversed(range(self.n_down))]
        self.up_b = [EqConv2D(ch[i + 1], ch[i], ku, name=f"up_b{i}", **conv)
                     for i in reversed(range(self.n_down))]
        self.up_c = [EqConv2D(ch[i + 1] + ch[i], ch[i], ku, nonlin="linear", name=f"up_c{i}",
                              **conv) for i in reversed(range(self.n_down))]
        # The code sizes the bottom kernel by res / 2^n, ignoring `double` (network.py:178).
        lowest = self.res // 2 ** self.n_down
        self.bottom = EqConv2D(ch[-1], ch[-1], 1 if lowest == 1 else 3, name="bottom", **conv)
        self.scale_a = EqConv2D(h // 2, h // 2, 3, name="conv_scale_out", **conv)
        self.scale_b = EqConv2D(h // 2, c, 1, nonlin="linear", zero_init=True,
                                name="conv_scale_out_b", **conv)
        self.bias_a = EqConv2D(h // 2, h // 2, 3, name="conv_bias_out", **conv)
        self.bias_b = EqConv2D(h // 2, c, 1, nonlin="linear", zero_init=True,
                               name="conv_bias_out_b", **conv)
        if self.res // (2 ** (self.n_down * self.per_layer)) < 1:
            raise ValueError(f"U-Net coupling at {self.res} px cannot downscale "
                             f"{self.n_down * self.per_layer} times")
        self.built = True

    @staticmethod
    def _down(x):
        n = int(x.shape[1])
        return downsample(x) if n > 4 else bilinear(x, n // 2, align_corners=True)

    @staticmethod
    def _up(x):
        n = int(x.shape[1])
        return upsample(x) if n > 4 else bilinear(x, 2 * n, align_corners=True)

    def call(self, x, cond=None, masks=None):
        visible, transformed = self.masks(x.dtype, masks)
        if self.is_cond:
            h = self.conv1(self.cond_connect(tf.concat([x * visible, self.cond_pre(cond)], -1)))
        else:
            h = self.conv1(x * visible)
        h = self.conv2(h)
        skips = []
        for a, b, c in zip(self.down, self.down_b, self.down_c):
            skips.append(h)
            for _ in range(self.per_layer):
                h = self._down(h)
            if int(h.shape[-1]) >= 2:
                h = instance_norm(h)
            h = c(tf.concat([h, b(a(h))], -1))
        h = self.bottom(h)
        for a, b, c in zip(self.up, self.up_b, self.up_c):
            for _ in range(self.per_layer):
                h = self._up(h)
            if int(h.shape[-1]) >= 2:
                h = instance_norm(h)
            h = (c(tf.concat([h, b(a(h))], -1)) + skips.pop()) / np.sqrt(2.0)
        h = self.conv3(h)
        hs, hb = tf.split(h, 2, axis=-1)
        return self._outputs(self.scale_b(self.scale_a(hs)), self.bias_b(self.bias_a(hb)),
                             transformed)
