"""1x1 convolutions of the hierarchical model's flows (hflow network.py:392-480).

FreeFormInvConv (Permute): stored K [C, C], initialised to a random rotation / M, used as
W = M K (the "x M reparameterisation", M = 0.3 in hflow). Encoding direction y = W x per pixel,
log|det| = H W log|det W| (float64); decoding through W^-1 computed in float64.

UnitaryInvConv (UnitaryPermute): stored A [C, C] ~ N(0, 1) / M, W = expm(M (A - A^T)), the
matrix exponential of a skew-symmetric matrix: orthogonal with det 1, so log|det| = 0 and
W^-1 = W^T. Used in the end block (M = 0.1). The exponential is `expm` below, not
tf.linalg.expm, whose data-dependent loop of squarings XLA cannot differentiate.
"""
import numpy as np
import tensorflow as tf

from tfglow.flow import FlowLayer, constant_initializer, per_example
from tfglow.invconv import log_abs_det, random_rotation


def _apply(x, w):
    """y[..., o] = sum_i w[o, i] x[..., i]."""
    return tf.einsum("bhwi,oi->bhwo", x, tf.cast(w, x.dtype))


# Pade [13/13] coefficients and the largest 1-norm it serves unscaled (Higham 2005, Table 2.3).
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
           129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
           40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152
MAX_SQUARINGS = 40


def expm(a):
    """Matrix exponential of a [C, C] (float64) by scaling and squaring (Higham 2005): the
    [13/13] Pade approximant of a / 2^s, then squared s times, s = max(0, ceil(log2(|a|_1 /
    theta13))) as tf.linalg.expm takes for large norms. The squarings are a fixed chain of
    MAX_SQUARINGS (each kept or skipped by a select), not a loop whose length depends on the
    data, so XLA compiles it and its gradient; below |a|_1 = theta13 * 2^40 none is missing."""
    b = [tf.constant(c, a.dtype) for c in _PADE13]
    eye = tf.eye(int(a.shape[-1]), dtype=a.dtype)
    norm = tf.reduce_max(tf.reduce_sum(tf.abs(a), axis=-2))
    s = tf.math.ceil(tf.math.log(norm / _THETA13) / np.log(2.0))
    s = tf.clip_by_value(tf.where(norm > 0, s, 0.0), 0.0, float(MAX_SQUARINGS))
    a = a / tf.pow(tf.constant(2.0, a.dtype), s)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2
             + b[1] * eye)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 + b[0] * eye
    r = tf.linalg.solve(v - u, v + u)
    for i in range(MAX_SQUARINGS):
        r = tf.where(i < s, r @ r, r)
    return r


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
        return expm(tf.cast(skew, tf.float64))

    def forward(self, x, **cond):
        return _apply(x, self.weight()), per_example(0.0, x)

    def inverse(self, y, **cond):
        return _apply(y, tf.transpose(self.weight())), per_example(0.0, y)
