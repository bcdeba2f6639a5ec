"""Stride-1 convolutions written as matrix products: the same maps as tf.nn.conv2d, faster on CPU.

All take NHWC input x [B, H, W, C] and a kernel [kh, kw, C, D] (odd kh, kw) and return
y [B, H, W, D]. With N = B * H * W and x2 = x reshaped to [N, C]:

    conv1x1:         y = x2 @ K[0, 0]                                       (one matmul)
    im2col:          y = patches(pad(x)) [N, kh*kw*C] @ K [kh*kw*C, D]      (for small C)
    shift_add:       Z = x2 @ K' [C, kh*kw*D];  y[i, j] = sum_{a,b} pad(Z)[i+a, j+b, (a, b)]
                                                                            (for small D)

The patches and the shifted taps are each taken with one gather over precomputed pixel
positions: the same speed as kh*kw slices here, and a fraction of the graph nodes (a
depth-32 model has ~200 of these convolutions, and graph size sets tracing time). The
gather's gradient is again a gather plus a sum over the <= kh*kw reads of each position
(`gather_positions`), not tf.gather's scatter-add.

`prepare_kernel` turns a kernel, or K stacked ones, into the operands of its form once;
`conv_prepared_flat` convolves with them (the flow-step loop prepares a level's kernels
before the loop, tfglow.scan).

On CPU, TensorFlow's Conv2DBackpropFilter for the coupling network's shapes (a wide hidden
layer against a narrow input or output) runs at a fraction of its matmul speed; the matmul
forms turn the forward and both backward passes into dense matmuls plus cheap copies of the
narrow side. Results equal tf.nn.conv2d up to float32 summation order (tests/test_conv.py).

`conv2d_same` chooses: "native" (tf.nn.conv2d) when a GPU is visible, where cuDNN is faster
and the patch copies would cost memory; otherwise im2col when C <= D and shift_add when
C > D. `set_conv_impl` overrides the choice for the process (benchmarks, tests).
"""
import functools

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


def inverse_index(index, n_src):
    """For a gather out[m] = src[index[m]] (m < M, index [M] ints in [0, n_src)): inv
    [n_src, T], T the most times a source row is read, with

        sum over t of g'[inv[p, t]] = sum over m with index[m] = p of g[m],

    g' being g [M, ...] with a zero row appended (inv points there where p is read < T times).
    So the gather's gradient is a gather and a sum, not a scatter-add (tf.gather's gradient:
    an UnsortedSegmentSum, on one core here)."""
    index = np.asarray(index, np.int64)
    counts = np.bincount(index, minlength=n_src)
    order = np.argsort(index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    inv = np.full((n_src, max(int(counts.max()), 1)), len(index), np.int64)
    inv[index[order], np.arange(len(index)) - starts[index[order]]] = order
    return inv.astype(np.int32)


def gather_positions(t, positions):
    """t [B, P, C] -> t[:, positions] [B, len(positions), C].

    With a static B, one gather on axis 0 of t as [B * P, C], whose gradient is again a
    gather (inverse_index) and a sum over at most kh*kw reads: tf.gather's own gradient
    on axis 1 is two transposes and a single-threaded segment sum, which were ~1/4 of the
    non-matmul op time of a cifar10 train step at width 128."""
    b = t.shape[0]
    if b is None:
        return tf.gather(t, positions, axis=1)
    b, p, c = int(b), int(t.shape[1]), int(t.shape[2])
    positions = np.asarray(positions, np.int32)
    index, inv = _row_indices(b, p, positions.tobytes())
    rows = _gather_rows(index, inv)(tf.reshape(t, [b * p, c]))
    return tf.reshape(rows, [b, len(positions), c])


@functools.lru_cache(maxsize=128)
def _row_indices(b, p, positions):
    """(index [B * len(positions)], inverse_index) of gather_positions on [B * P, C]; cached
    (the same few shapes recur in every step, and eager data-dependent init runs them all)."""
    positions = np.frombuffer(positions, np.int32)
    index = (np.arange(b)[:, None] * p + positions[None, :]).reshape(-1)
    return index.astype(np.int32), inverse_index(index, b * p)


def _gather_rows(index, inv):
    """x [N, C] -> x[index] [M, C], differentiable through inv = inverse_index(index, N)."""
    @tf.custom_gradient
    def gather(x):
        def grad(dy):
            padded = tf.concat([dy, tf.zeros([1, int(dy.shape[-1])], dy.dtype)], axis=0)
            if inv.shape[1] == 1:
                return tf.gather(padded, inv[:, 0])
            return tf.reduce_sum(tf.gather(padded, inv), axis=1)
        return tf.gather(x, index), grad
    return gather


def patches(xp, height, width, kh, kw):
    """xp [B, H+kh-1, W+kw-1, C] -> [B, H, W, kh*kw*C], ordered (a, b, c) like a kernel reshape.

    One gather (few graph nodes; its gradient is one scatter-add) instead of kh*kw slices.
    """
    c = int(xp.shape[-1])
    flat = tf.reshape(xp, [_batch(xp), -1, c])
    cols = gather_positions(flat, _tap_positions(height, width, kh, kw))
    return tf.reshape(cols, [_batch(xp), height, width, kh * kw * c])


def shift_add_same(x, k2, kh, kw, d):
    """SAME convolution as one matmul to kh*kw*D channels, then the sum of the kh*kw shifted
    taps, gathered at once from the zero-padded result -> [B, H, W, D].

    k2 [C, kh*kw*D]: the kernel [kh, kw, C, D] as K' (prepare_kernel), columns (a, b, d)."""
    height, width = int(x.shape[1]), int(x.shape[2])
    taps = kh * kw
    z = tf.reshape(tf.matmul(_flat(x), k2), [_batch(x), height, width, taps, d])
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    zp = tf.reshape(tf.pad(z, [[0, 0], [ph, ph], [pw, pw], [0, 0], [0, 0]]), [_batch(x), -1, d])
    # Output (i, j) takes tap t = (a, b) from padded position (i + a, j + b).
    index = _tap_positions(height, width, kh, kw) * taps + np.tile(np.arange(taps), height * width)
    gathered = gather_positions(zp, index.astype(np.int32))
    return tf.reduce_sum(tf.reshape(gathered, [_batch(x), height, width, taps, d]), axis=3)


def conv_form(c, d, kh, kw):
    """How a [kh, kw, C, D] convolution computes: "1x1", "native", "im2col" or "shift_add"."""
    if (kh, kw) == (1, 1):
        return "1x1"
    if conv_impl() == "native":
        return "native"
    return "im2col" if c <= d else "shift_add"


def prepare_kernel(kernel, edge_padded=False):
    """kernel [..., kh, kw, C(+1), D] -> the tuple of operands `conv_prepared_flat` takes.

    Leading axes [...] are kept, so the K stacked kernels of a level are prepared at once,
    before the loop over its steps (tfglow.scan): the loop body then has no slice or
    transpose of a kernel, nor their gradients (the transposes were ~2% of a cifar10 train
    step's op time on CPU, the slices part of coupling.split_channels' ~5%). With edge_padded the kernel has the original's
    indicator channel last (edge_padded_conv_flat). Forms (conv_form):
        1x1        ([..., C, D],)
        im2col     ([..., kh*kw*(C+1), D],)            the indicator is a column per tap
        native     ([..., kh, kw, C, D][, [..., kh, kw, 1, D]])
        shift_add  ([..., C, kh*kw*D][, [..., kh*kw, D]])   columns of K' ordered (a, b, d)
    """
    lead = [int(n) for n in kernel.shape[:-4]]
    kh, kw, c1, d = (int(n) for n in kernel.shape[-4:])
    c = c1 - 1 if edge_padded else c1
    form = conv_form(c, d, kh, kw)
    if form == "1x1":
        if edge_padded:
            raise ValueError("a 1x1 convolution has no edge padding")
        return (tf.reshape(kernel, lead + [c, d]),)
    if form == "im2col":
        return (tf.reshape(kernel, lead + [kh * kw * c1, d]),)
    main, edge = tf.split(kernel, [c, 1], axis=-2) if edge_padded else (kernel, None)
    if form == "native":
        return (main,) if edge is None else (main, edge)
    r = len(lead)
    k2 = tf.reshape(tf.transpose(main, list(range(r)) + [r + 2, r, r + 1, r + 3]),
                    lead + [c, kh * kw * d])
    return (k2,) if edge is None else (k2, tf.reshape(edge, lead + [kh * kw, d]))


def conv_prepared_flat(x, prepared, kernel_size, filters, edge_padded=False):
    """Stride-1 SAME (edge_padded: the original's edge padding) convolution of x [B, H, W, C]
    from `prepare_kernel` operands -> [B * H * W, filters]."""
    kh, kw = kernel_size
    c, d = int(x.shape[-1]), int(filters)
    form = conv_form(c, d, kh, kw)
    if form == "1x1":
        return tf.matmul(_flat(x), prepared[0])
    height, width = int(x.shape[1]), int(x.shape[2])
    if form == "im2col":
        xp = pad_same(x, kh, kw)
        if edge_padded:
            ind = tf.constant(edge_indicator(height, width, kh, kw), dtype=x.dtype)
            xp = tf.concat([xp, tf.tile(ind, [_batch(x), 1, 1, 1])], axis=-1)
        cols = patches(xp, height, width, kh, kw)
        return tf.matmul(tf.reshape(cols, [-1, int(prepared[0].shape[0])]), prepared[0])
    if form == "native":
        y = tf.nn.conv2d(x, prepared[0], strides=1, padding="SAME")
    else:
        y = shift_add_same(x, prepared[0], kh, kw, d)
    if edge_padded:
        # Linear in the input channels: the indicator channel's part is a [1, H, W, D] bias.
        ind = tf.constant(edge_indicator(height, width, kh, kw), dtype=x.dtype)
        if form == "native":
            y = y + tf.nn.conv2d(ind, prepared[1], strides=1, padding="VALID")
        else:
            cols = patches(ind, height, width, kh, kw)
            y = y + tf.reshape(tf.matmul(tf.reshape(cols, [-1, kh * kw]), prepared[1]),
                               [1, height, width, d])
    return _flat(y)


def conv2d_same_flat(x, kernel):
    """Stride-1 SAME convolution of x [B, H, W, C] with kernel [kh, kw, C, D] -> [N, D].

    The flat result lets callers add a bias and activation directly after the matmul, where
    TensorFlow fuses them.
    """
    kh, kw, _, d = (int(s) for s in kernel.shape)
    return conv_prepared_flat(x, prepare_kernel(kernel), (kh, kw), d)


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
    kh, kw, _, d = (int(n) for n in kernel.shape)
    return conv_prepared_flat(x, prepare_kernel(kernel, edge_padded=True), (kh, kw), d,
                              edge_padded=True)
