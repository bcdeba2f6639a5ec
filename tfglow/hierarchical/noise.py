"""Encoder noise (paper eq. 11; hflow network.py:1181-1189, :1989-2000, :2035-2046).

q(y|x) = N(y; mu(x), (alpha sigma(X))^2 I) with sigma(X) = mean over the dimensions of y of the
per-dimension (unbiased) standard deviation of mu over the minibatch. The entropy of q per
example, k/2 log(2 pi e (alpha sigma)^2) for k = dim y, completes the ELBO; hflow adds it to the
loss detached (no gradient), and so do we.
"""
import numpy as np
import tensorflow as tf


def minibatch_sigma(y):
    """sigma(X) of eq. 11 for y [B, ...] (B >= 2) -> scalar."""
    if y.shape[0] is not None and int(y.shape[0]) < 2:
        raise ValueError(f"the encoder noise scale is a minibatch statistic: a batch of >= 2 "
                         f"images is needed; got latents of shape {y.shape}")
    flat = tf.reshape(y, [tf.shape(y)[0], -1])
    n = tf.cast(tf.shape(flat)[0], y.dtype)
    mean = tf.reduce_mean(flat, 0, keepdims=True)
    var = tf.reduce_sum(tf.square(flat - mean), 0) / (n - 1.0)
    return tf.reduce_mean(tf.sqrt(var))


def entropy(y, std):
    """Entropy of N(., std^2 I) over one example of y [B, ...] -> [B] (detached)."""
    k = float(np.prod(y.shape[1:]))
    h = k * (0.5 * tf.math.log(2.0 * np.pi * tf.square(std)) + 0.5)
    return tf.stop_gradient(tf.fill([tf.shape(y)[0]], tf.cast(h, y.dtype)))


def gaussian_log_q(eps, std):
    """log N(y; mu, std^2 I) at y = mu + std * eps, per example: [B, ...] -> [B]."""
    k = float(np.prod(eps.shape[1:]))
    sq = tf.reduce_sum(tf.reshape(tf.square(eps), [tf.shape(eps)[0], -1]), 1)
    return -0.5 * sq - k * (tf.math.log(std) + 0.5 * np.log(2.0 * np.pi))
