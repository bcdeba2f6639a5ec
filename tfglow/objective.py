"""Data <-> model space and the dequantised objective (Glow eq. 2), as the original.

    n_bins = 2**n_bits_x
    preprocess:   x = floor(x_uint8 / 2**(8 - n_bits_x)) / n_bins - 0.5        in [-0.5, 0.5)
    postprocess:  x_uint8 = clip(floor((x + 0.5) * n_bins) * (256 / n_bins), 0, 255)
    dequantise:   x~ = x + u,  u ~ U(0, 1/n_bins)
    objective  =  log p(x~) - D log(n_bins)          (c = -M log a of eq. 2, with a = 1/n_bins)
    bits_x     = -objective / (D ln 2)               D = H * W * C of the ORIGINAL image

bits_x is an upper bound on the discrete model's code length in bits per sub-pixel.
"""
import numpy as np
import tensorflow as tf


def preprocess(x_uint8, n_bits_x):
    """uint8 [B, H, W, C] -> float32 in [-0.5, 0.5) on the grid of n_bins levels."""
    x = tf.cast(x_uint8, tf.float32)
    if n_bits_x < 8:
        x = tf.floor(x / 2 ** (8 - n_bits_x))
    return x / 2 ** n_bits_x - 0.5


def postprocess(x, n_bits_x):
    """float [B, H, W, C] -> uint8, the bin of x scaled back to 0..255."""
    n_bins = 2.0 ** n_bits_x
    x = tf.floor((x + 0.5) * n_bins) * (256.0 / n_bins)
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def dequantize(x, n_bits_x, noise=None, seed=None):
    """x + u with u ~ U(0, 1/n_bins). `noise`, if given, is u * n_bins in [0, 1)."""
    if noise is None:
        if seed is None:
            noise = tf.random.uniform(tf.shape(x), 0.0, 1.0, dtype=x.dtype)
        else:
            noise = tf.random.stateless_uniform(tf.shape(x), seed, 0.0, 1.0, dtype=x.dtype)
    return x + tf.cast(noise, x.dtype) / 2.0 ** n_bits_x


def discretization_correction(n_dims, n_bits_x):
    """The constant -D log(n_bins) of eq. 2 (nats)."""
    return -float(n_dims) * np.log(2.0 ** n_bits_x)


def bits_per_dim(log_density, n_dims, n_bits_x):
    """bits_x from log p(x~) in nats: -(log p(x~) - D log n_bins) / (D ln 2)."""
    objective = log_density + discretization_correction(n_dims, n_bits_x)
    return -objective / (float(n_dims) * np.log(2.0))


def standard_normal_logp(eps):
    """sum over all but the batch axis of log N(eps; 0, 1): [B, ...] -> [B]."""
    logp = -0.5 * (np.log(2.0 * np.pi) + tf.square(eps))
    return tf.reduce_sum(tf.reshape(logp, [tf.shape(eps)[0], -1]), axis=1)
