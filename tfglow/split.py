"""Split with a learned conditional prior (the original's `split2d`; Glow Figure 2b).

At the end of each level but the last, z [B, H, W, C] is split into channel halves z1 (kept,
squeezed and passed on) and z2 (factored out), and z2 is scored under a Gaussian whose
parameters come from z1, with the mean and log-scale *interleaved* as the original:

    h = Conv2DZeros_3x3(z1) -> [B, H, W, C];   mean = h[..., 0::2],   logs = h[..., 1::2]
    log p(z2 | z1) = sum log N(z2; mean, exp(logs))

We write this as a bijector on z2 given z1, so the whole model maps x to standard normals:

    eps2 = (z2 - mean) * exp(-logs)          log|det| = -sum(logs)
    z2 = mean + exp(logs) * eps2              (decode; sampling draws eps2 ~ N(0, T^2))

and log N(z2; mean, exp(logs)) = log N(eps2; 0, 1) - sum(logs) gives the original's objective.
"""
import tensorflow as tf

from tfglow.coupling import split_channels
from tfglow.flow import FlowLayer, sum_except_batch
from tfglow.nn import Conv2DZeros


class Split2d(FlowLayer):
    """[B, H, W, C] -> concat(z1, eps2); `split` and `merge` give the halves separately."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % 2:
            raise ValueError(f"{self.name}: split needs an even channel count, got {channels}")
        self.conv = Conv2DZeros(channels, (3, 3), name="conv")
        self.conv.build(tuple(input_shape[:-1]) + (channels // 2,))

    def mean_and_logs(self, z1):
        return self.conv.call_deinterleaved(z1)  # h[..., 0::2], h[..., 1::2]

    def split(self, z):
        """z -> (z1, eps2, log|det|): z1, eps2 [B, H, W, C/2], log|det| [B]."""
        z1, z2 = split_channels(z)
        mean, logs = self.mean_and_logs(z1)
        return z1, (z2 - mean) * tf.exp(-logs), -sum_except_batch(logs)

    def merge(self, z1, eps2):
        """(z1, eps2) -> (z, log|det dz/d(eps2)| [B]), the exact inverse of split."""
        mean, logs = self.mean_and_logs(z1)
        return tf.concat([z1, mean + tf.exp(logs) * eps2], axis=-1), sum_except_batch(logs)

    def forward(self, z, **cond):
        z1, eps2, logdet = self.split(z)
        return tf.concat([z1, eps2], axis=-1), logdet

    def inverse(self, y, **cond):
        return self.merge(*split_channels(y))
