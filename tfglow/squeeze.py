"""Squeeze (space-to-depth by 2) of the multi-scale architecture (RealNVP; Glow Figure 2b).

    squeeze2d:   [B, H, W, C] -> [B, H/2, W/2, 4C]
    y[b, i, j, 4c + 2di + dj] = x[b, 2i + di, 2j + dj, c]

This is the original's channel order (channel-major), not tf.nn.space_to_depth's
((2di + dj) * C + c): the order decides which variables the split factors out, so it is kept.
A permutation of the entries: log|det| = 0.
"""
import tensorflow as tf

from tfglow.flow import FlowLayer, per_example


def squeeze2d(x, factor=2):
    """[B, H, W, C] -> [B, H/f, W/f, C f^2] in the original's channel order."""
    h, w, c = (int(d) for d in x.shape[1:])
    if h % factor or w % factor:
        raise ValueError(f"squeeze2d: spatial shape {(h, w)} is not divisible by {factor}")
    x = tf.reshape(x, [-1, h // factor, factor, w // factor, factor, c])
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4])
    return tf.reshape(x, [-1, h // factor, w // factor, c * factor * factor])


def unsqueeze2d(x, factor=2):
    """Inverse of squeeze2d: [B, H, W, C f^2] -> [B, H f, W f, C]."""
    h, w, c = (int(d) for d in x.shape[1:])
    if c % (factor * factor):
        raise ValueError(f"unsqueeze2d: {c} channels are not divisible by {factor * factor}")
    x = tf.reshape(x, [-1, h, w, c // factor ** 2, factor, factor])
    x = tf.transpose(x, [0, 1, 4, 2, 5, 3])
    return tf.reshape(x, [-1, h * factor, w * factor, c // factor ** 2])


class Squeeze(FlowLayer):
    """squeeze2d as a flow layer (changes the event shape)."""

    def forward(self, x, **cond):
        return squeeze2d(x), per_example(0.0, x)

    def inverse(self, y, **cond):
        return unsqueeze2d(y), per_example(0.0, y)

    def forward_event_shape(self, shape):
        h, w, c = shape
        return (h // 2, w // 2, c * 4)

    def inverse_event_shape(self, shape):
        h, w, c = shape
        return (h * 2, w * 2, c // 4)
