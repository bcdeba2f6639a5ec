"""Instance normalisation as hflow's `instance_norm` (network.py:222-227): per example and
channel over the pixels, unbiased variance, (x - mean) / sqrt(var + 1e-6). At 1x1 (W == 1)
the code normalises over the channels instead, which we mirror."""
import tensorflow as tf


def instance_norm(x):
    """[B, H, W, C] -> same shape."""
    if int(x.shape[2]) > 1:
        axes, n = [1, 2], int(x.shape[1]) * int(x.shape[2])
    else:
        axes, n = [1, 2, 3], int(x.shape[1]) * int(x.shape[2]) * int(x.shape[3])
    mean = tf.reduce_mean(x, axes, keepdims=True)
    var = tf.reduce_sum(tf.square(x - mean), axes, keepdims=True) / (n - 1)
    return (x - mean) / tf.sqrt(var + 1e-6)
