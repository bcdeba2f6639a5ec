"""Invertible 1x1 convolution (Glow section 3.2, Table 1 row 2; eq. 9-11).

Plain (flow_permutation 2), as the original:

    y[b, i, j, :] = x[b, i, j, :] @ W           W: [C, C], a random rotation at init
    x[b, i, j, :] = y[b, i, j, :] @ W^-1
    log|det| = H * W * log|det W|               (eq. 9)

The original stores the kernel as [1, 1, C_in, C_out], i.e. y = x W (the paper writes W x,
which is the same map with W transposed; the log-determinant is the same).

LU-decomposed (flow_permutation 3; eq. 10-11): W = P L (U + diag(sign(s) * exp(log|s|))) with
P and sign(s) fixed, L unit lower triangular, U strictly upper triangular, log|det W| =
sum(log|s|). W, its inverse and log|det W| are computed in float64 (the original did the
determinant in float64 but the inverse in float32; float64 keeps decode exact for deep models).
"""
import numpy as np
import scipy.linalg
import tensorflow as tf

from tfglow.conv import conv1x1
from tfglow.flow import FlowLayer, constant_initializer, per_example


def random_rotation(rng, channels):
    """A random orthogonal [C, C] matrix: Q of the QR decomposition of a Gaussian matrix."""
    return np.linalg.qr(rng.standard_normal((channels, channels)))[0].astype(np.float32)


def log_abs_det(w):
    """log|det w| in float64 for square w [..., C, C] -> [...], as sum(log|diag(R)|) of w = QR.

    Same value as tf.linalg.slogdet, but QR (and its gradient, W^-T) also compiles with XLA,
    which has no kernel for the log-determinant op.
    """
    r = tf.linalg.qr(tf.cast(w, tf.float64))[1]
    return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))), axis=-1)


def _spatial(x):
    return int(x.shape[1]) * int(x.shape[2])


class InvConv1x1(FlowLayer):
    """Plain invertible 1x1 convolution with a full [C, C] weight (see module docstring)."""

    def __init__(self, rng=None, **kwargs):
        super().__init__(**kwargs)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            shape=(channels, channels), name="W",
            initializer=constant_initializer(random_rotation(self._rng, channels)))

    def raw_weights(self):
        return (tf.convert_to_tensor(self.kernel),)

    def prepare(self, raw, inverse=False):
        """(W or, for the inverse, W^-1 [..., C, C] float32, log|det W| [...] float32)."""
        w = raw[0]
        logdet = tf.cast(log_abs_det(w), tf.float32)
        if inverse:
            w = tf.cast(tf.linalg.inv(tf.cast(w, tf.float64)), tf.float32)
        return w, logdet

    def forward_with(self, prepared, x):
        w, logdet = prepared
        return conv1x1(x, w), per_example(_spatial(x) * logdet, x)

    def inverse_with(self, prepared, y):
        w_inv, logdet = prepared
        return conv1x1(y, w_inv), per_example(-_spatial(y) * logdet, y)

    def weight_and_logdet(self):
        """(W float32 [C, C], log|det W| float32 scalar); the determinant in float64."""
        return self.prepare(self.raw_weights())

    def inverse_weight(self):
        return self.prepare(self.raw_weights(), inverse=True)[0]

    def forward(self, x, **cond):
        return self.forward_with(self.prepare(self.raw_weights()), x)

    def inverse(self, y, **cond):
        return self.inverse_with(self.prepare(self.raw_weights(), inverse=True), y)


def lu_parameters(w):
    """(P, L, U, sign_s, log_s) of a [C, C] matrix, as float32, for LUInvConv1x1 (eq. 10)."""
    p, lower, upper = scipy.linalg.lu(np.asarray(w, np.float64))
    s = np.diag(upper)
    return tuple(a.astype(np.float32) for a in (
        p, lower, np.triu(upper, k=1), np.sign(s), np.log(np.abs(s))))


class LUInvConv1x1(FlowLayer):
    """LU-decomposed invertible 1x1 convolution, initialised from a random rotation."""

    def __init__(self, rng=None, **kwargs):
        super().__init__(**kwargs)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        channels = int(input_shape[-1])
        p, lower, upper, sign_s, log_s = lu_parameters(random_rotation(self._rng, channels))

        def weight(name, value, trainable=True):
            return self.add_weight(shape=value.shape, name=name, trainable=trainable,
                                   initializer=constant_initializer(value))

        self.p = weight("P", p, trainable=False)
        self.lower = weight("L", lower)
        self.upper = weight("U", upper)
        self.sign_s = weight("sign_S", sign_s, trainable=False)
        self.log_s = weight("log_S", log_s)
        self._l_mask = np.tril(np.ones((channels, channels)), -1)

    def set_from_matrix(self, w):
        """Sets P, L, U, sign(s), log|s| so that this layer computes x @ w."""
        for var, value in zip((self.p, self.lower, self.upper, self.sign_s, self.log_s),
                              lu_parameters(w)):
            var.assign(value)

    def raw_weights(self):
        """(P, L, U, sign(s), log|s|) as tensors."""
        return tuple(tf.convert_to_tensor(v) for v in
                     (self.p, self.lower, self.upper, self.sign_s, self.log_s))

    def _factors64(self, raw):
        """(P, L, U') [..., C, C] in float64 with W = P L U'."""
        p, lower, upper, sign_s, log_s = (tf.cast(v, tf.float64) for v in raw)
        eye = tf.eye(self._l_mask.shape[0], dtype=tf.float64)
        lower = lower * self._l_mask + eye
        upper = upper * self._l_mask.T + tf.linalg.diag(sign_s * tf.exp(log_s))
        return p, lower, upper

    def prepare(self, raw, inverse=False):
        """(W or, for the inverse, W^-1 [..., C, C] float32, log|det W| [...] float32)."""
        p, lower, upper = self._factors64(raw)
        logdet = tf.reduce_sum(raw[4], axis=-1)
        if not inverse:
            return tf.cast(p @ lower @ upper, tf.float32), logdet
        # W^-1 = U'^-1 L^-1 P^T, by two triangular solves.
        l_inv_pt = tf.linalg.triangular_solve(lower, tf.linalg.matrix_transpose(p), lower=True)
        return tf.cast(tf.linalg.triangular_solve(upper, l_inv_pt, lower=False), tf.float32), logdet

    forward_with = InvConv1x1.forward_with
    inverse_with = InvConv1x1.inverse_with
    forward = InvConv1x1.forward
    inverse = InvConv1x1.inverse

    def weight(self):
        return self.prepare(self.raw_weights())[0]

    def inverse_weight(self):
        return self.prepare(self.raw_weights(), inverse=True)[0]
