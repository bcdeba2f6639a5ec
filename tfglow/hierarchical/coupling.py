"""Masked conditional affine coupling (paper eq. 2; hflow network.py:606-615).

Encoding direction, with (s, b) = NN(x * visible, cond) zero on the visible part:
    y = (x - b) * exp(-s)        log|det| = -sum(s)       (s clipped to +-3, b to +-5)
    x = y * exp(s) + b           (NN sees the same visible part of y, so the map inverts)
The paper writes x_b * NN_s + NN_b in the generation direction; this is the code's form.
"""
import tensorflow as tf

from tfglow.flow import FlowLayer, sum_except_batch


class MaskedAffineCoupling(FlowLayer):
    """[B, H, W, C] -> same; `net` is a ConvConditioner or UNetConditioner; cond kwarg `cond`:
    the level's conditioning tensor [B, H, W, cond_channels] (None for unconditional flows)."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.built = True

    def forward(self, x, cond=None, masks=None, **unused):
        s, b = self.net(x, cond, masks=masks)
        return (x - b) * tf.exp(-s), -sum_except_batch(s)

    def inverse(self, y, cond=None, masks=None, **unused):
        s, b = self.net(y, cond, masks=masks)
        return y * tf.exp(s) + b, sum_except_batch(s)
