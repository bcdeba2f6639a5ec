"""The official code's splits and downsampling (flows.py:283-322); all volume preserving.

    column split   [B, H, W, C] -> ([B, H, W/2, C] even columns, [B, H, W/2, C] odd columns)
                   (the paper's "checkerboard": the code reshapes to [B, H, W/2, 2, C] and
                   unstacks axis 3, i.e. it splits by column parity, not by a checkerboard)
    channel split  [B, H, W, C] -> (x[..., :C/2], x[..., C/2:])
    space_to_depth [B, H, W, C] -> [B, H/2, W/2, 4C], channel (2*dy + dx)*C + c, as
                   tf.nn.space_to_depth (NOT Glow's squeeze2d order, which is c*4 + 2*dy + dx)

As FlowLayers, `Split` maps x to the stacked pair [B, H, W', C', 2] (see tfglow.flowpp.pair).
"""
import tensorflow as tf

from tfglow.flow import FlowLayer
from tfglow.flowpp.pair import stack_pair, unstack_pair

SPLITS = ("column", "channel")


def _static(x, axis):
    return int(x.shape[axis]) if x.shape[axis] is not None else None


def column_split(x, name="x"):
    """[B, H, W, C] -> (even columns, odd columns), each [B, H, W/2, C]."""
    if x.shape.rank != 4:
        raise ValueError(f"{name} must be [B, H, W, C] for the column split; got shape {x.shape}")
    h, w, c = _static(x, 1), _static(x, 2), _static(x, 3)
    if w is None or w % 2:
        raise ValueError(f"{name} must have an even width for the column split; got width {w} "
                         f"(shape {x.shape})")
    x = tf.reshape(x, [-1, h, w // 2, 2, c])
    a, b = tf.unstack(x, num=2, axis=3)
    return a, b


def column_merge(a, b):
    """Inverse of column_split: interleaves the columns of a (even) and b (odd)."""
    h, w, c = _static(a, 1), _static(a, 2), _static(a, 3)
    return tf.reshape(tf.stack([a, b], axis=3), [-1, h, 2 * w, c])


def channel_split(x, name="x"):
    """[B, H, W, C] -> (x[..., :C/2], x[..., C/2:])."""
    c = _static(x, -1) if x.shape.rank == 4 else None
    if c is None or c % 2:
        raise ValueError(f"{name} must be [B, H, W, C] with an even number of channels for the "
                         f"channel split; got shape {x.shape}")
    return x[..., :c // 2], x[..., c // 2:]


def channel_merge(a, b):
    return tf.concat([a, b], axis=-1)


def split(x, kind, name="x"):
    if kind == "column":
        return column_split(x, name)
    if kind == "channel":
        return channel_split(x, name)
    raise ValueError(f"split kind {kind!r} must be one of {SPLITS}")


def merge(a, b, kind):
    return column_merge(a, b) if kind == "column" else channel_merge(a, b)


def split_shape(shape, kind):
    """(H, W, C) of one half for a [H, W, C] input."""
    h, w, c = shape
    return (h, w // 2, c) if kind == "column" else (h, w, c // 2)


def space_to_depth(x, name="x"):
    """[B, H, W, C] -> [B, H/2, W/2, 4C] in TF's channel order (2*dy + dx)*C + c."""
    if x.shape.rank != 4 or any(_static(x, i) is None or _static(x, i) % 2 for i in (1, 2)):
        raise ValueError(f"{name} must be [B, H, W, C] with even H and W for space_to_depth; "
                         f"got shape {x.shape}")
    return tf.nn.space_to_depth(x, 2)


def depth_to_space(y):
    return tf.nn.depth_to_space(y, 2)


def _zeros(x):
    return tf.zeros([tf.shape(x)[0]], x.dtype)


class Split(FlowLayer):
    """x [B, H, W, C] -> stacked pair [B, H, W', C', 2]; the inverse merges. log|det| 0."""

    inverse_event_ndims = 4

    def __init__(self, kind="column", **kwargs):
        super().__init__(**kwargs)
        if kind not in SPLITS:
            raise ValueError(f"Split(kind={kind!r}) must be one of {SPLITS}")
        self.kind = kind

    def forward(self, x, **cond):
        return stack_pair(*split(x, self.kind)), _zeros(x)

    def inverse(self, y, **cond):
        return merge(*unstack_pair(y), self.kind), _zeros(y)

    def forward_event_shape(self, shape):
        return split_shape(tuple(shape), self.kind) + (2,)

    def inverse_event_shape(self, shape):
        h, w, c, _ = shape
        return (h, 2 * w, c) if self.kind == "column" else (h, w, 2 * c)


class SpaceToDepth(FlowLayer):
    """tf.nn.space_to_depth with block 2 as a flow (flows.py:283-291); log|det| 0."""

    def forward(self, x, **cond):
        return space_to_depth(x), _zeros(x)

    def inverse(self, y, **cond):
        return depth_to_space(y), _zeros(y)

    def forward_event_shape(self, shape):
        h, w, c = shape
        return (h // 2, w // 2, 4 * c)

    def inverse_event_shape(self, shape):
        h, w, c = shape
        return (2 * h, 2 * w, c // 4)
