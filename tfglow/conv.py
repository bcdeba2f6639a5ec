"""Stride-1 convolutions written as matrix products: the same maps as tf.nn.conv2d, faster on CPU.

All take NHWC input x [B, H, W, C] and a kernel [kh, kw, C, D] (odd kh, kw) and return
y [B, H, W, D]. With N = B * H * W and x2 = x reshaped to [N, C]:

    conv1x1:         y = x2 @ K[0, 0]                                       (one matmul)
    im2col:          y = patches(pad(x)) [N, kh*kw*C] @ K [kh*kw*C, D]      (for small C)
    shift_add:       Z = x2 @ K' [C, kh*kw*D];  y[i, j] = sum_{a,b} pad(Z)[i+a, j+b, (a, b)]
                                                                            (for small D)

The patches and the shifted taps are each taken with one tf.gather over precomputed pixel
positions: the same speed as kh*kw slices here, and a fraction of the graph nodes (a
depth-32 model has ~200 of these convolutions, and graph size sets tracing time).

On CPU, TensorFlow's Conv2DBackpropFilter for the coupling network's shapes (a wide hidden
layer against a narrow input or output) runs at a fraction of its matmul speed; the matmul
forms turn the forward and both backward passes into dense matmuls plus cheap copies of the
narrow side. Results equal tf.nn.conv2d up to float32 summation order (tests/test_conv.py).

`conv2d_same` chooses: "native" (tf.nn.conv2d) when a GPU is visible, where cuDNN is faster
and the patch copies would cost memory; otherwise im2col when C <= D and shift_add when
C > D. `set_conv_impl` overrides the choice for the process (benchmarks, tests).
"""
import numpy as np
import tensorflow as tf

_IMPL = "auto"
IMPLS = ("auto", "native", "matmul")


def set_conv_impl(impl):
    """Selects how conv2d_same computes: "auto" (default), "native" or "matmul"."""
    global _IMPL
    if impl not in IMPLS:
        raise ValueError(f"conv impl {impl!r} must be one of {IMPLS}")
    _IMPL = impl


def conv_impl():
    """The implementation conv2d_same uses now: "native" or "matmul"."""
    if _IMPL != "auto":
        return _IMPL
    return "native" if tf.config.list_logical_devices("GPU") else "matmul"


def _flat(x):
    return tf.reshape(x, [-1, int(x.shape[-1])])


def leading_shape(x):
    """x.shape[:-1] as a list of ints when static (fewer graph ops), else as a tensor."""
    if x.shape[:-1].is_fully_defined():
        return [int(d) for d in x.shape[:-1]]
    return tf.shape(x)[:-1]


def unflat(y2, x, channels):
    """[N, D] -> [B, H, W, D] with B, H, W of x (B may be dynamic)."""
    lead = leading_shape(x)
    shape = lead + [channels] if isinstance(lead, list) else tf.concat([lead, [channels]], 0)
    return tf.reshape(y2, shape)


def conv1x1(x, w):
    """x [B, H, W, C] @ w [C, D] over the channel axis -> [B, H, W, D]."""
    return unflat(tf.matmul(_flat(x), w), x, int(w.shape[-1]))


def pad_same(x, kh, kw):
    """Zero padding of x [B, H, W, C] for a stride-1 SAME kh x kw convolution."""
    a, b = (kh - 1) // 2, (kw - 1) // 2
    return tf.pad(x, [[0, 0], [a, a], [b, b], [0, 0]])


def _tap_positions(height, width, kh, kw):
    """[H*W*kh*kw] int32: the flat position (i + a) * (W + kw - 1) + (j + b) in a padded
    [H + kh - 1, W + kw - 1] image of tap (a, b) of output pixel (i, j), ordered (i, j, a, b)."""
    i, j, a, b = np.meshgrid(np.arange(height), np.arange(width), np.arange(kh), np.arange(kw),
                             indexing="ij")
    return ((i + a) * (width + kw - 1) + (j + b)).reshape(-1).astype(np.int32)


def _batch(x):
    return int(x.shape[0]) if x.shape[0] is not None else tf.shape(x)[0]


def patches(xp, height, width, kh, kw):
    """xp [B, H+kh-1, W+kw-1, C] -> [B, H, W, kh*kw*C], ordered (a, b, c) like a kernel reshape.

    One gather (few graph nodes; its gradient is one scatter-add) instead of kh*kw slices.
    """
    c = int(xp.shape[-1])
    flat = tf.reshape(xp, [_batch(xp), -1, c])
    cols = tf.gather(flat, _tap_positions(height, width, kh, kw), axis=1)
    return tf.reshape(cols, [_batch(xp), height, width, kh * kw * c])


def im2col_valid(xp, kernel):
    """VALID convolution of an already padded xp [B, H+kh-1, W+kw-1, C] -> flat [N, D]."""
    kh, kw, c, d = (int(s) for s in kernel.shape)
    height, width = int(xp.shape[1]) - kh + 1, int(xp.shape[2]) - kw + 1
    cols = patches(xp, height, width, kh, kw)
    return tf.matmul(tf.reshape(cols, [-1, kh * kw * c]), tf.reshape(kernel, [kh * kw * c, d]))


def shift_add_same(x, kernel):
    """SAME convolution as one matmul to kh*kw*D channels, then the sum of the kh*kw shifted
    taps, gathered at once from the zero-padded result -> [B, H, W, D]."""
    kh, kw, c, d = (int(s) for s in kernel.shape)
    height, width = int(x.shape[1]), int(x.shape[2])
    taps = kh * kw
    # K' [C, kh*kw*D], columns ordered (a, b, d).
    k2 = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [c, taps * d])
    z = tf.reshape(tf.matmul(_flat(x), k2), [_batch(x), height, width, taps, d])
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    zp = tf.reshape(tf.pad(z, [[0, 0], [ph, ph], [pw, pw], [0, 0], [0, 0]]), [_batch(x), -1, d])
    # Output (i, j) takes tap t = (a, b) from padded position (i + a, j + b).
    index = _tap_positions(height, width, kh, kw) * taps + np.tile(np.arange(taps), height * width)
    gathered = tf.gather(zp, index.astype(np.int32), axis=1)
    return tf.reduce_sum(tf.reshape(gathered, [_batch(x), height, width, taps, d]), axis=3)


def conv2d_same_flat(x, kernel):
    """Stride-1 SAME convolution of x [B, H, W, C] with kernel [kh, kw, C, D] -> [N, D].

    The flat result lets callers add a bias and activation directly after the matmul, where
    TensorFlow fuses them.
    """
    kh, kw, c, d = (int(s) for s in kernel.shape)
    if (kh, kw) == (1, 1):
        return tf.matmul(_flat(x), kernel[0, 0])
    if conv_impl() == "native":
        return _flat(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
    if c <= d:
        return im2col_valid(pad_same(x, kh, kw), kernel)
    return _flat(shift_add_same(x, kernel))


def conv2d_same(x, kernel):
    """Stride-1 SAME convolution of x [B, H, W, C] with kernel [kh, kw, C, D] -> [B, H, W, D]."""
    return unflat(conv2d_same_flat(x, kernel), x, int(kernel.shape[-1]))


def edge_indicator(height, width, kh, kw):
    """[1, H + kh - 1, W + kw - 1, 1] float32: 1 on the zero-padded border, 0 inside."""
    a, b = (kh - 1) // 2, (kw - 1) // 2
    ind = np.ones((1, height + 2 * a, width + 2 * b, 1), np.float32)
    ind[:, a:a + height, b:b + width, :] = 0.0
    return ind


def edge_padded_conv_flat(x, kernel):
    """The original's "edge padding" convolution of x [B, H, W, C] -> [N, D].

    kernel [kh, kw, C + 1, D]: the original zero-pads x, appends a channel that is 1 on the
    padding and 0 inside, and convolves VALID. Convolution is linear in its input channels, so
    this is conv_SAME(x, K[:, :, :C]) + conv_VALID(indicator, K[:, :, C:]), where the second
    term is a [1, H, W, D] position-dependent bias. im2col takes the indicator as one more
    input channel (a column per tap); the other forms add the bias.
    """
    kh, kw, c1, d = (int(s) for s in kernel.shape)
    c = c1 - 1
    height, width = int(x.shape[1]), int(x.shape[2])
    ind = tf.constant(edge_indicator(height, width, kh, kw), dtype=x.dtype)
    if conv_impl() == "matmul" and c <= d:
        xp = tf.concat([pad_same(x, kh, kw), tf.tile(ind, [_batch(x), 1, 1, 1])], axis=-1)
        return im2col_valid(xp, kernel)
    if conv_impl() == "native":
        edge = tf.nn.conv2d(ind, kernel[:, :, c:], strides=1, padding="VALID")
    else:
        edge = tf.reshape(im2col_valid(ind, kernel[:, :, c:]), [1, height, width, d])
    y = conv2d_same(x, kernel[:, :, :c]) + edge
    return _flat(y)
