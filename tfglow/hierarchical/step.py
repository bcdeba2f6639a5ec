"""One step of a level's conditional flow (hflow network.py:560-618, `Step`).

Encoding direction: HActNorm -> MaskedAffineCoupling -> 1x1 convolution (free-form or unitary).
No squeeze, no split: shapes stay [B, H, W, C]. Conditioning kwarg: `cond` (see coupling).

`recomputed` runs a step (or any deterministic part: the levels' decoders and encoders) with
gradient checkpointing, as tfglow.recompute does for Glow's steps, with extra tensor inputs.
"""
import tensorflow as tf
# The only way to run ops unseen by enclosing tapes (tfglow.recompute uses it too).
from tensorflow.python.eager import record

from tfglow.flow import FlowLayer
from tfglow.hierarchical.actnorm import HActNorm
from tfglow.hierarchical.conditioners import ConvConditioner, UNetConditioner
from tfglow.hierarchical.coupling import MaskedAffineCoupling
from tfglow.hierarchical.invconv import FreeFormInvConv, UnitaryInvConv
from tfglow.hierarchical.masks import split_masks
from tfglow.recompute import variable_gradients, with_zeros


class FlowStep(FlowLayer):
    """split: "C", "S2", "S4", "S8"; index: the step's index in the generation order (flips the
    spatial masks on even indices). U-Net coupling networks for spatial splits at >= 4 px."""

    def __init__(self, channels, res, hidden, split, index, cond_channels=None, kernel=3,
                 unitary=False, permute_scaling=0.3, unet_downscales=2, unet_mult=2.0,
                 unet_double=False, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.split, self.index = split, int(index)
        visible, transformed = split_masks(split, int(res), int(channels), self.index)
        net_kw = dict(cond_channels=cond_channels, kernel=kernel, rng=rng, name="net")
        if split != "C" and res >= 4:
            net = UNetConditioner(channels, res, hidden, visible, transformed,
                                  downscales=unet_downscales, mult=unet_mult, double=unet_double,
                                  **net_kw)
        else:
            net = ConvConditioner(channels, res, hidden, visible, transformed, **net_kw)
        self.actnorm = HActNorm(channels, name="actnorm")
        self.coupling = MaskedAffineCoupling(net, name="coupling")
        conv = UnitaryInvConv if unitary else FreeFormInvConv
        self.invconv = conv(channels, scaling=permute_scaling, rng=rng, name="invconv")
        self.built = True

    def forward(self, x, cond=None, masks=None, **unused):
        """masks: (visible, transformed) [R, R, C] in place of the step's own (shared traces)."""
        x, a = self.actnorm.forward(x)
        x, b = self.coupling.forward(x, cond=cond, masks=masks)
        x, c = self.invconv.forward(x)
        return x, a + b + c

    def inverse(self, y, cond=None, masks=None, **unused):
        y, c = self.invconv.inverse(y)
        y, b = self.coupling.inverse(y, cond=cond, masks=masks)
        y, a = self.actnorm.inverse(y)
        return y, a + b + c


@tf.autograph.experimental.do_not_convert
def recomputed(fn, *args):
    """fn(*args) with gradient checkpointing: keeps only args for the backward pass.

    args: tensors or None (e.g. no conditioning); fn returns a nest of tensors or None (e.g.
    FlowStep.forward: (y [B, H, W, C], log|det| [B])). The forward runs unseen by enclosing
    tapes, so none of fn's internal activations (a coupling network's hidden layers) are
    kept; the gradient re-runs fn under a tape and back-propagates to every tensor argument
    (x, and cond, through which the decoders are trained) and to the variables fn reads.
    Same values as fn; gradients equal to float rounding. Not for fn that assign variables
    (the data-dependent init would run twice).
    """
    present = [i for i, a in enumerate(args) if a is not None]
    structure = []

    def call(tensors):
        full = list(args)
        for i, t in zip(present, tensors):
            full[i] = t
        out = fn(*full)
        structure[:] = [out]
        return [t for t in tf.nest.flatten(out) if t is not None]

    @tf.custom_gradient
    def run(*tensors):
        # Waiting for the inputs keeps the variable reads from running (and staying live) early.
        with record.stop_recording(), tf.control_dependencies(tensors):
            outs = call(tensors)

        def grad_fn(*douts, variables=None):
            douts = [with_zeros(g, o) for g, o in zip(douts, outs)]
            # Recompute only once backprop reaches this call (see tfglow.recompute.waiting_for).
            with tf.control_dependencies(douts), tf.GradientTape() as tape:
                tape.watch(tensors)
                again = call(tensors)
            watched = tape.watched_variables()
            grads = tape.gradient(again, [*tensors, *watched], output_gradients=douts)
            dins = [with_zeros(g, t) for g, t in zip(grads[:len(tensors)], tensors)]
            if variables is None:
                return dins
            return dins, variable_gradients(variables, list(zip(watched, grads[len(tensors):])))

        return outs, grad_fn

    flat = iter(run(*[args[i] for i in present]))
    return tf.nest.map_structure(lambda t: None if t is None else next(flat), structure[0])
