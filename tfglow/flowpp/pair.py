"""Pairs of halves: the state a Flow++ step works on, and TupleFlip.

Inside a stage the official code carries a tuple (x1, x2) of equal-shape halves [B, H, W, C]
(flows.py:271-322). Pair layers implement

    forward_pair(a, b, **cond) -> ((a', b'), log|det| [B])
    inverse_pair(a, b, **cond) -> ((a, b), -log|det| [B])

and, for their FlowLayer / TFP bijector face, take the pair stacked on a new last axis,
x [B, H, W, C, 2] (event_ndims 4), so a pair layer composes with tfb.Chain like any flow.
"""
import tensorflow as tf

from tfglow.flow import FlowLayer


def stack_pair(a, b):
    """(a, b) [B, H, W, C] each -> [B, H, W, C, 2]."""
    return tf.stack([a, b], axis=-1)


def unstack_pair(x):
    """[B, H, W, C, 2] -> (a, b)."""
    if x.shape.rank != 5 or (x.shape[-1] is not None and x.shape[-1] != 2):
        raise ValueError(f"x must be a stacked pair [B, H, W, C, 2]; got shape {x.shape}")
    return tf.unstack(x, num=2, axis=-1)


class PairFlowLayer(FlowLayer):
    """Base class of flows on a pair of halves. `build` takes the shape of ONE half."""

    event_ndims = 4

    def forward_pair(self, a, b, **cond):
        raise NotImplementedError

    def inverse_pair(self, a, b, **cond):
        raise NotImplementedError

    def forward(self, x, **cond):
        (a, b), logdet = self.forward_pair(*unstack_pair(x), **cond)
        return stack_pair(a, b), logdet

    def inverse(self, y, **cond):
        (a, b), logdet = self.inverse_pair(*unstack_pair(y), **cond)
        return stack_pair(a, b), logdet


class Parallel(PairFlowLayer):
    """Two independent single-tensor flows, one per half (the port's `Parallel`)."""

    def __init__(self, first, second, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = first, second

    def build(self, half_shape):
        self.first.build(half_shape)
        self.second.build(half_shape)
        self.built = True

    def forward_pair(self, a, b, **cond):
        a, da = self.first.forward(a)
        b, db = self.second.forward(b)
        return (a, b), da + db

    def inverse_pair(self, a, b, **cond):
        a, da = self.first.inverse(a)
        b, db = self.second.inverse(b)
        return (a, b), da + db


class TupleFlip(PairFlowLayer):
    """(a, b) -> (b, a), log|det| 0 (flows.py:271-280)."""

    def build(self, half_shape):
        self.built = True

    def forward_pair(self, a, b, **cond):
        return (b, a), tf.zeros([tf.shape(a)[0]], a.dtype)

    def inverse_pair(self, a, b, **cond):
        return (b, a), tf.zeros([tf.shape(a)[0]], a.dtype)
