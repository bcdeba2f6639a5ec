"""Shared helpers of the Flow++ tests: small configurations, float64 layers, perturbation."""
import contextlib

import keras
import numpy as np
import tensorflow as tf

from tfglow.flowpp import FlowPPConfig

# 8x8x3, every kind of stage, 16 filters, 1 block, K = 4: D = 192.
SMALL = dict(image_size=8, stages=("column:2", "squeeze", "channel:1", "column:1"), filters=16,
             blocks=1, heads=2, components=4, dropout=0.2, dequant_filters=16, dequant_blocks=1,
             dequant_steps=2, dequant_context_channels=8, dequant_context_blocks=1, seed=3)


def small_config(**changes):
    return FlowPPConfig(**{**SMALL, **changes})


@contextlib.contextmanager
def float64_layers():
    """Layers created inside hold float64 variables and compute in float64."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def perturb(layer, rng, scale=0.05):
    """Moves every trainable variable off its init by N(0, scale) noise (any float dtype)."""
    for v in layer.trainable_variables:
        noise = rng.normal(0.0, scale, size=v.shape)
        v.assign(v + noise.astype(tf.as_dtype(v.dtype).as_numpy_dtype))


def jacobian_logdet(fn, x):
    """log|det d fn(x) / dx| per example by autodiff, for fn: [B, ...] -> [B, ...] same size."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    jac = tape.batch_jacobian(y, x)
    b, d = int(x.shape[0]), int(np.prod(x.shape[1:]))
    jac = tf.reshape(tf.cast(jac, tf.float64), [b, int(np.prod(y.shape[1:])), d])
    return tf.linalg.slogdet(jac)[1].numpy()


def images(rng, n, cfg):
    return rng.integers(0, 256, size=(n,) + cfg.image_shape, dtype=np.uint8)
