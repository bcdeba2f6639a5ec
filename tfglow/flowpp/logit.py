"""The input map "ImgProc" of the official code (flows.py:254-268): pixels -> logit space.

    y = (x + u) * 0.9/256 + 0.05              [0, 256] -> [0.05, 0.95]
    out = logit(y) = log y - log(1 - y)
    log|det| = sum(-log y - log(1 - y)) + D * log(0.9/256),   D = H * W * C

x + u is the dequantised image in pixel units (x integer 0..255, u in [0, 1)). The density is
thus per unit of pixel value, so the objective has no -D log 256 term (flow_training.py:15-22).
"""
import numpy as np
import tensorflow as tf

from tfglow.flow import FlowLayer, sum_except_batch

SCALE = 0.9 / 256.0
OFFSET = 0.05


def _n_dims(x):
    return int(np.prod(x.shape[1:]))


class ImgProc(FlowLayer):
    """x [B, H, W, C] in [0, 256] -> logit(x * 0.9/256 + 0.05), with its log-determinant."""

    def build(self, input_shape):
        self.built = True

    def forward(self, x, **cond):
        y = x * SCALE + OFFSET
        log_y, log_1my = tf.math.log(y), tf.math.log1p(-y)
        logdet = sum_except_batch(-log_y - log_1my) + _n_dims(x) * np.log(SCALE)
        return log_y - log_1my, logdet

    def inverse(self, z, **cond):
        # -log s - log(1 - s) of s = sigmoid(z), written with softplus to stay finite.
        logdet = sum_except_batch(tf.nn.softplus(z) + tf.nn.softplus(-z))
        x = (tf.sigmoid(z) - OFFSET) / SCALE
        return x, -(logdet + _n_dims(z) * np.log(SCALE))
