"""1x1 convolutions of the hierarchical model's flows (hflow network.py:392-480).

FreeFormInvConv (Permute): stored K [C, C], initialised to a random rotation / M, used as
W = M K (the "x M reparameterisation", M = 0.3 in hflow). Encoding direction y = W x per pixel,
log|det| = H W log|det W| (float64); decoding through W^-1 computed in float64.

UnitaryInvConv (UnitaryPermute): stored A [C, C] ~ N(0, 1) / M, W = expm(M (A - A^T)), the
matrix exponential of a skew-symmetric matrix: orthogonal with det 1, so log|det| = 0 and
W^-1 = W^T. Used in the end block (M = 0.1).
"""
import numpy as np
import tensorflow as tf

from tfglow.flow import FlowLayer, constant_initializer, per_example
from tfglow.invconv import log_abs_det, random_rotation


def _apply(x, w):
    """y[..., o] = sum_i w[o, i] x[..., i]."""
    return tf.einsum("bhwi,oi->bhwo", x, tf.cast(w, x.dtype))


class FreeFormInvConv(FlowLayer):
    def __init__(self, channels, scaling=0.3, rng=None, **kwargs):
        super().__init__(**kwargs)
        rng = rng if rng is not None else np.random.default_rng()
        self.scaling = float(scaling)
        init = random_rotation(rng, int(channels)) / np.float32(self.scaling)
        self.kernel = self.add_weight(shape=init.shape, name="K",
                                      initializer=constant_initializer(init))
        self.built = True

    def weight(self):
        return self.kernel * self.scaling

    def _logdet(self, x):
        ld = tf.cast(log_abs_det(self.weight()), x.dtype)
        return per_example(int(x.shape[1]) * int(x.shape[2]) * ld, x)

    def forward(self, x, **cond):
        return _apply(x, self.weight()), self._logdet(x)

    def inverse(self, y, **cond):
        w_inv = tf.linalg.inv(tf.cast(self.weight(), tf.float64))
        return _apply(y, w_inv), -self._logdet(y)


class UnitaryInvConv(FlowLayer):
    def __init__(self, channels, scaling=0.1, rng=None, **kwargs):
        super().__init__(**kwargs)
        rng = rng if rng is not None else np.random.default_rng()
        self.scaling = float(scaling)
        c = int(channels)
        init = rng.standard_normal((c, c), dtype=np.float32) / np.float32(self.scaling)
        self.raw = self.add_weight(shape=(c, c), name="U", initializer=constant_initializer(init))
        self.built = True

    def weight(self):
        skew = (self.raw - tf.transpose(self.raw)) * self.scaling
        return tf.linalg.expm(tf.cast(skew, tf.float64))

    def forward(self, x, **cond):
        return _apply(x, self.weight()), per_example(0.0, x)

    def inverse(self, y, **cond):
        return _apply(y, tf.transpose(self.weight())), per_example(0.0, y)
