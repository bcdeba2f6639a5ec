"""Decoder block (hflow network.py:1156-1335, the decoder half of EncoderDecoderBlock).

One x2 step, coarse latent (noisy in training) [B, r, r, c_latent] -> [B, 2r, 2r, ...]:

    predictor (the lowest block of a level, except the last level): with the finer level's skip
        features s [B, r, r, c_skip]: z = (z + UNet([s, z])) / sqrt 2;
        w = 3x3(z); w = (w + 3x3(w)) / sqrt 2; w = 3x3(w) (linear); z = [s, w]
    h = 3x3(z) -> IN? -> h = (3x3(h) + h) / sqrt 2 -> anti-aliased up
    -> IN? / style -> h = (3x3(h) + h) / sqrt 2 -> IN? / style -> h = (3x3(h) + h) / sqrt 2
    style: IN, then h * s + b with (s, b) = dense(g) of the global vector g (no 1 + s: as the code)
    `residuals` (the level's top block): the start/end affine maps of the level's flow
        start_b = 1x1(h) (+ U-Net refinement above 8 px, (u + start_b) / sqrt 2)
        start_s = clip(1x1(3x3(h)), +-3)  (the 1x1 zero-initialised)     same for end_b, end_s
      returns ((start_b, start_s, end_b, end_s), h); else returns (IN?(h), None).
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.hierarchical.eqlr import EqConv2D, eq_dense
from tfglow.hierarchical.norm import instance_norm
from tfglow.hierarchical.resample import upsample
from tfglow.hierarchical.unet import DecoderUNet

S_CLIP = 3.0


class DecoderBlock(keras.layers.Layer):
    def __init__(self, res_out, c_latent, c_hidden, c_out=None, c_skip=0, predictor=False,
                 residuals=False, norm=True, style_channels=0, refine_unet=False, lr_mul=10.0,
                 rng=None, **kwargs):
        super().__init__(**kwargs)
        self.res_out, self.norm, self.residuals = int(res_out), bool(norm), bool(residuals)
        conv = dict(lr_mul=lr_mul, group="decoders", rng=rng)
        self.predictor = bool(predictor)
        c_in = c_latent
        if self.predictor:
            r = self.res_out // 2
            self.conv_d_pred_0 = DecoderUNet(c_skip + c_latent, c_latent, r, base=2.0,
                                             instnorm=norm, rng=rng, name="conv_d_pred_0")
            self.conv_d_pred_1 = EqConv2D(c_latent, c_hidden, 3, name="conv_d_pred_1", **conv)
            self.conv_d_pred_2 = EqConv2D(c_hidden, c_hidden, 3, use_bias=False,
                                          name="conv_d_pred_2", **conv)
            self.conv_d_pred_3 = EqConv2D(c_hidden, c_latent, 3, nonlin="linear", use_bias=False,
                                          name="conv_d_pred_3", **conv)
            c_in = c_skip + c_latent
        self.conv_d1 = EqConv2D(c_in, c_hidden, 3, name="conv_d1", **conv)
        self.conv_d2 = EqConv2D(c_hidden, c_hidden, 3, name="conv_d2", **conv)
        self.conv_d3 = EqConv2D(c_hidden, c_hidden, 3, name="conv_d3", **conv)
        self.conv_d4 = EqConv2D(c_hidden, c_hidden, 3, name="conv_d4", **conv)
        self.style = style_channels > 0
        if self.style:  # MyLinear(gs, 2 * hidden), learning rate x1, in the "flows" group
            self.style_1 = eq_dense(style_channels, 2 * c_hidden, nonlin="linear", name="A_1_s",
                                    rng=rng)
            self.style_2 = eq_dense(style_channels, 2 * c_hidden, nonlin="linear", name="A_2_s",
                                    rng=rng)
        if self.residuals:
            self.refine = bool(refine_unet) and self.res_out > 8
            head = dict(**conv)
            self.conv_d5_a = EqConv2D(c_hidden, c_out, 1, nonlin="linear", name="conv_d5_a", **head)
            self.conv_d5_b = EqConv2D(c_hidden, c_out, 3, name="conv_d5_b", **head)
            self.conv_d5_bb = EqConv2D(c_out, c_out, 1, nonlin="linear", zero_init=True,
                                       name="conv_d5_bb", **head)
            self.conv_d5_c = EqConv2D(c_hidden, c_out, 1, nonlin="linear", name="conv_d5_c", **head)
            self.conv_d5_d = EqConv2D(c_hidden, c_out, 3, name="conv_d5_d", **head)
            self.conv_d5_dd = EqConv2D(c_out, c_out, 1, nonlin="linear", zero_init=True,
                                       name="conv_d5_dd", **head)
            if self.refine:
                self.conv_d5_un = DecoderUNet(c_out, c_out, self.res_out, instnorm=norm, rng=rng,
                                              name="conv_d5_un")
                self.conv_d5_c_un = DecoderUNet(c_out, c_out, self.res_out, instnorm=norm,
                                                rng=rng, name="conv_d5_c_un")
        self.built = True

    def _modulate(self, x, dense, g):
        if self.style and g is not None:
            s, b = tf.split(dense(g[:, None, None, :]), 2, axis=-1)
            return instance_norm(x) * s + b
        return instance_norm(x) if self.norm else x

    def call(self, z, g=None, skip=None):
        if self.predictor:
            z = (z + self.conv_d_pred_0(tf.concat([skip, z], -1))) / np.sqrt(2.0)
            w = self.conv_d_pred_1(z)
            w = (w + self.conv_d_pred_2(w)) / np.sqrt(2.0)
            z = tf.concat([skip, self.conv_d_pred_3(w)], -1)
        x = self.conv_d1(z)
        if self.norm:
            x = instance_norm(x)
        x = upsample((self.conv_d2(x) + x) / np.sqrt(2.0))
        x = self._modulate(x, getattr(self, "style_1", None), g)
        x = self._modulate((self.conv_d3(x) + x) / np.sqrt(2.0), getattr(self, "style_2", None), g)
        x = (self.conv_d4(x) + x) / np.sqrt(2.0)
        if not self.residuals:
            return (instance_norm(x) if self.norm else x), None
        start_b, end_b = self.conv_d5_a(x), self.conv_d5_c(x)
        if self.refine:
            start_b = (self.conv_d5_un(start_b) + start_b) / np.sqrt(2.0)
            end_b = (self.conv_d5_c_un(end_b) + end_b) / np.sqrt(2.0)
        start_s = tf.clip_by_value(self.conv_d5_bb(self.conv_d5_b(x)), -S_CLIP, S_CLIP)
        end_s = tf.clip_by_value(self.conv_d5_dd(self.conv_d5_d(x)), -S_CLIP, S_CLIP)
        return (start_b, start_s, end_b, end_s), x
