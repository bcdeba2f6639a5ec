"""Encoder block (hflow network.py:1178-1226, the encoder half of EncoderDecoderBlock).

One x1/2 step, [B, R, R, c_in] -> (latent [B, R/2, R/2, c_latent] or None,
                                   features [B, R/2, R/2, c_hidden] or None):
    k x k conv (lrelu) -> anti-aliased down (average pooling at <= 4 px or without the
    anti-aliased filter) -> IN -> k x k conv (lrelu) -> IN
    -> 1x1 (linear) to the next level's features      (`mid`)
    -> 1x1 (linear) to the latent, then IN            (`c_latent`)
IN is skipped at 1x1. Convolutions have the encoders' learning-rate multiplier (10 in hflow).
"""
import keras

from tfglow.hierarchical.eqlr import EqConv2D
from tfglow.hierarchical.norm import instance_norm
from tfglow.hierarchical.resample import avg_pool2, downsample


class EncoderBlock(keras.layers.Layer):
    def __init__(self, res, c_in, c_hidden, c_latent=None, mid=True, antialias=True, kernel=3,
                 lr_mul=10.0, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.res, self.antialias = int(res), bool(antialias)
        k = 1 if self.res < 4 else int(kernel)
        conv = dict(lr_mul=lr_mul, group="encoders", rng=rng)
        self.conv_e1 = EqConv2D(c_in, c_hidden, k, name="conv_e1", **conv)
        self.conv_e2 = EqConv2D(c_hidden, c_hidden, k, name="conv_e2", **conv)
        self.conv_e3_b = (EqConv2D(c_hidden, c_hidden, 1, nonlin="linear", name="conv_e3_b", **conv)
                          if mid else None)
        self.conv_e3 = (EqConv2D(c_hidden, c_latent, 1, nonlin="linear", name="conv_e3", **conv)
                        if c_latent else None)
        self.built = True

    def call(self, x):
        x = self.conv_e1(x)
        x = downsample(x) if self.antialias and self.res > 4 else avg_pool2(x)
        spatial = int(x.shape[1]) > 1
        if spatial:
            x = instance_norm(x)
        x = self.conv_e2(x)
        if spatial:
            x = instance_norm(x)
        mid = self.conv_e3_b(x) if self.conv_e3_b is not None else None
        latent = None
        if self.conv_e3 is not None:
            latent = self.conv_e3(x)
            if spatial:
                latent = instance_norm(latent)
        return latent, mid
