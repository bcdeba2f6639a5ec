"""Actnorm of the hierarchical model's flows (hflow network.py:486-557).

Encoding direction (data -> latent), per channel:
    y = (x - bias) * exp(-log_scale)          log|det| = -H * W * sum(log_scale)
Data-dependent init on the first encoding pass (inside tfglow.actnorm.data_dependent_init):
bias = mean(x), log_scale = log(std(x)) with the unbiased std over batch and pixels, so y has zero
mean and unit variance. Unlike Glow's actnorm (mean/biased std, applied as (x + b) * exp(s)).
At 1x1 (the end block) the code skips the data-dependent init and keeps the zero init.
"""
import tensorflow as tf

from tfglow.actnorm import ddi_active, ddi_mean_fn, ddi_workers
from tfglow.flow import FlowLayer, per_example


class HActNorm(FlowLayer):
    """[B, H, W, C] -> same; see module docstring."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        c = int(channels)
        self.bias = self.add_weight(shape=(c,), initializer="zeros", name="an_bias")
        self.log_scale = self.add_weight(shape=(c,), initializer="zeros", name="an_scale")
        self.built = True

    def initialize_from(self, x):
        mean_fn = ddi_mean_fn()
        # Bessel's correction with the count over all workers: the split of the init batch
        # must not change the init (1 device x 8 images == 2 replicas x 4).
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]) * ddi_workers(), x.dtype)
        mean = mean_fn(tf.reduce_mean(x, [0, 1, 2]))
        var = mean_fn(tf.reduce_mean(tf.square(x - mean), [0, 1, 2])) * n / (n - 1.0)
        self.bias.assign(tf.cast(mean, self.bias.dtype))
        self.log_scale.assign(tf.cast(0.5 * tf.math.log(var), self.log_scale.dtype))

    def _logdet(self, x):
        return per_example(int(x.shape[1]) * int(x.shape[2]) * tf.reduce_sum(self.log_scale), x)

    def forward(self, x, **cond):
        if ddi_active() and int(x.shape[1]) * int(x.shape[2]) > 1:
            self.initialize_from(x)
        return (x - self.bias) * tf.exp(-self.log_scale), -self._logdet(x)

    def inverse(self, y, **cond):
        return y * tf.exp(self.log_scale) + self.bias, self._logdet(y)
