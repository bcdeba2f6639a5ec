"""One step of flow (Glow Figure 2a): actnorm -> permutation -> coupling.

    forward:  x -> ActNorm -> {Reverse | Shuffle | InvConv1x1 | LUInvConv1x1} -> Coupling -> y
    inverse:  the three inverses in the opposite order
    log|det| = the sum of the three (eq. 7)
"""
import tensorflow as tf

from tfglow.actnorm import ActNorm
from tfglow.coupling import AdditiveCoupling, AffineCoupling
from tfglow.flow import FlowLayer
from tfglow.invconv import InvConv1x1, LUInvConv1x1
from tfglow.permutation import Reverse, Shuffle


def make_permutation(flow_permutation, rng=None, name="permutation"):
    """The permutation layer of GlowConfig.flow_permutation (0, 1, 2 or 3)."""
    if flow_permutation == 0:
        return Reverse(name="reverse")
    if flow_permutation == 1:
        return Shuffle(rng=rng, name="shuffle")
    if flow_permutation == 2:
        return InvConv1x1(rng=rng, name="invconv")
    if flow_permutation == 3:
        return LUInvConv1x1(rng=rng, name="invconv_lu")
    raise ValueError(f"flow_permutation={flow_permutation!r} must be 0, 1, 2 or 3")


def make_coupling(flow_coupling, width, rng=None):
    """The coupling layer of GlowConfig.flow_coupling (0 additive, 1 affine)."""
    if flow_coupling == 0:
        return AdditiveCoupling(width, rng=rng, name="additive_coupling")
    if flow_coupling == 1:
        return AffineCoupling(width, rng=rng, name="affine_coupling")
    raise ValueError(f"flow_coupling={flow_coupling!r} must be 0 or 1")


class FlowStep(FlowLayer):
    """actnorm -> permutation -> coupling on [B, H, W, C]."""

    def __init__(self, width, flow_permutation=2, flow_coupling=0, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.actnorm = ActNorm(name="actnorm")
        self.permutation = make_permutation(flow_permutation, rng=rng)
        self.coupling = make_coupling(flow_coupling, width, rng=rng)

    @property
    def flows(self):
        return (self.actnorm, self.permutation, self.coupling)

    def build(self, input_shape):
        for flow in self.flows:
            flow.build(input_shape)

    def forward(self, x, **cond):
        logdet = tf.zeros([tf.shape(x)[0]], x.dtype)
        for flow in self.flows:
            x, d = flow.forward(x)
            logdet += d
        return x, logdet

    def inverse(self, y, **cond):
        logdet = tf.zeros([tf.shape(y)[0]], y.dtype)
        for flow in reversed(self.flows):
            y, d = flow.inverse(y)
            logdet += d
        return y, logdet

    # Step protocol (tfglow.scan): the same maps from weights prepared outside the step, so
    # that one traced body serves every step of a level (their weights stacked).
    def raw_weights(self):
        """Nested tuple of the variables' values (tensors) the three flows compute from."""
        return tuple(flow.raw_weights() for flow in self.flows)

    def prepare(self, raw, inverse=False):
        """Prepared weights of `raw` (of one step, or of several stacked on leading axes)."""
        return tuple(flow.prepare(r, inverse) for flow, r in zip(self.flows, raw))

    def inverse_prepared(self, raw, prepared):
        """`prepare(raw, inverse=True)`, reusing the parts of `prepared` (forward) that are the
        same in both directions (all but the permutation's)."""
        return (prepared[0], self.permutation.prepare(raw[1], inverse=True), prepared[2])

    def forward_with(self, prepared, x):
        """As forward, from `prepare(raw_weights())` (of this or a same-shaped step)."""
        logdet = tf.zeros([tf.shape(x)[0]], x.dtype)
        for flow, p in zip(self.flows, prepared):
            x, d = flow.forward_with(p, x)
            logdet += d
        return x, logdet

    def inverse_with(self, prepared, y):
        """As inverse, from `prepare(raw_weights(), inverse=True)`."""
        logdet = tf.zeros([tf.shape(y)[0]], y.dtype)
        for flow, p in zip(reversed(self.flows), reversed(prepared)):
            y, d = flow.inverse_with(p, y)
            logdet += d
        return y, logdet
