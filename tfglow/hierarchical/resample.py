"""Resampling of [B, H, W, C] images, as hflow (network.py:9-27 and torch's interpolate).

downsample:  anti-aliased x1/2: reflect padding 1, depthwise 4x4 filter k k^T with
             k = [1, 3, 3, 1] / 8, stride 2 (decimate2_torch)
upsample:    anti-aliased x2: x placed at the odd positions of a zero image of twice the size,
             reflect padding (1 before, 2 after), depthwise 4 k k^T (interpolate2_torch)
bilinear:    torch.nn.functional.interpolate(mode="bilinear") with align_corners False or True,
             done as two small interpolation matrices so any float dtype works (tf.image.resize
             returns float32); used by hflow's U-Nets at small resolutions.
avg_pool2:   2x2 average pooling (the encoders at <= 4 px and at the last level).
"""
import numpy as np
import tensorflow as tf


def blur_kernel():
    k = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
    return np.outer(k, k)


def _depthwise(x, kernel2d, stride):
    c = int(x.shape[-1])
    k = tf.constant(np.tile(kernel2d[:, :, None, None], (1, 1, c, 1)), x.dtype)
    return tf.nn.depthwise_conv2d(x, k, [1, stride, stride, 1], "VALID")


def downsample(x):
    """[B, H, W, C] -> [B, H/2, W/2, C], anti-aliased (H, W even, >= 2)."""
    x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return _depthwise(x, blur_kernel(), 2)


def upsample(x):
    """[B, H, W, C] -> [B, 2H, 2W, C], anti-aliased."""
    b, h, w, c = (tf.shape(x)[0], int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    t = tf.pad(x[:, :, None, :, None, :], [[0, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    t = tf.reshape(t, [b, 2 * h, 2 * w, c])
    t = tf.pad(t, [[0, 0], [1, 2], [1, 2], [0, 0]], mode="REFLECT")
    return _depthwise(t, 4.0 * blur_kernel(), 1)


def avg_pool2(x):
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def bilinear_matrix(n_in, n_out, align_corners):
    """[n_out, n_in] weights of torch's 1-D linear interpolation (source index clamped at 0)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m


def bilinear(x, size, align_corners=False):
    """[B, H, W, C] -> [B, size, size, C] bilinear resize as torch's interpolate."""
    mh = tf.constant(bilinear_matrix(int(x.shape[1]), size, align_corners), x.dtype)
    mw = tf.constant(bilinear_matrix(int(x.shape[2]), size, align_corners), x.dtype)
    return tf.einsum("oh,pw,bhwc->bopc", mh, mw, x)
