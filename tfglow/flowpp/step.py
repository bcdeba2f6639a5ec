"""One Flow++ step on a pair of halves, and running a chain of them (optionally checkpointed).

    step = [Norm, Pointwise, Coupling, TupleFlip]          (run_cifar.py:61-77)

Each half has its own Norm and Pointwise parameters; the coupling transforms the second half
given the first, then the halves swap. The ImageNet launchers have no Pointwise
(pointwise=False).

Gradient checkpointing (`checkpointed_pair_step`): the forward pass of a whole step runs
unrecorded; the backward pass recomputes it from the stored input pair (and context) under a
tape. Only the step boundaries stay in memory instead of every block's activations (the
attention weights alone are heads * (H*W)^2 floats per block and image: 4 MiB at 32x16).
Dropout masks are stateless functions of the step's seed, so the recomputation is exact.
The helpers are tfglow.recompute's (the Glow steps' checkpointing), generalised to pairs.
"""
import tensorflow as tf
from tensorflow.python.eager import record

from tfglow.flowpp import loop
from tfglow.flowpp.conditioner import sub_seed
from tfglow.flowpp.coupling import AffineCoupling, MixLogisticCoupling
from tfglow.flowpp.norm import pair_norm
from tfglow.flowpp.pair import PairFlowLayer
from tfglow.flowpp.pointwise import pair_pointwise
from tfglow.recompute import variable_gradients, waiting_for, with_zeros


class FlowPPStep(PairFlowLayer):
    """Norm -> Pointwise -> Coupling -> TupleFlip on a pair (a, b) of halves [B, H, W, C].

    cond: context (dequantizer couplings), training (dropout on), seed ([2] int, dropout).
    """

    def __init__(self, filters=96, blocks=10, components=32, heads=4, dropout=0.0,
                 attention=True, coupling="mixlogistic", context_channels=0, pointwise=True,
                 inverse="bisection", mixture_dtype="float32", rng=None, **kwargs):
        super().__init__(**kwargs)
        self.norm = pair_norm()
        self.pointwise = pair_pointwise(rng) if pointwise else None
        common = dict(filters=filters, blocks=blocks, heads=heads, dropout=dropout,
                      attention=attention, context_channels=context_channels, rng=rng,
                      name="coupling")
        if coupling == "mixlogistic":
            self.coupling = MixLogisticCoupling(components=components, inverse=inverse,
                                                mixture_dtype=mixture_dtype, **common)
        elif coupling == "affine":
            self.coupling = AffineCoupling(**common)
        else:
            raise ValueError(f"coupling={coupling!r} must be 'mixlogistic' or 'affine'")

    def build(self, half_shape):
        for layer in self.layers_in_order():
            layer.build(tuple(half_shape))
        self.built = True

    def layers_in_order(self):
        return [l for l in (self.norm, self.pointwise, self.coupling) if l is not None]

    def forward_pair(self, a, b, context=None, training=False, seed=None):
        logdet = 0.0
        for layer in (self.norm, self.pointwise):
            if layer is not None:
                (a, b), d = layer.forward_pair(a, b)
                logdet += d
        (a, b), d = self.coupling.forward_pair(a, b, context=context, training=training,
                                                seed=seed)
        return (b, a), logdet + d

    def inverse_pair(self, a, b, context=None, training=False, seed=None):
        a, b = b, a
        (a, b), logdet = self.coupling.inverse_pair(a, b, context=context, training=training,
                                                     seed=seed)
        for layer in (self.pointwise, self.norm):
            if layer is not None:
                (a, b), d = layer.inverse_pair(a, b)
                logdet += d
        return (a, b), logdet


def checkpointed_pair_step(step, training=False, seed=None):
    """fn(a, b, context) -> (a', b', log|det| [B]) storing only its inputs for backprop."""

    def forward(a, b, context):
        return step.forward_pair(a, b, context=context, training=training, seed=seed)

    @tf.custom_gradient
    def run(a, b, context):
        with record.stop_recording(), waiting_for(a):
            (ya, yb), d = forward(a, b, context)

        def grad_fn(dya, dyb, dd, variables=None):
            dya, dyb, dd = with_zeros(dya, ya), with_zeros(dyb, yb), with_zeros(dd, d)
            inputs = [a, b, context]
            with waiting_for(dya), tf.GradientTape() as tape:
                tape.watch(inputs)
                (ya2, yb2), d2 = forward(a, b, context)
            watched = tape.watched_variables()
            grads = tape.gradient((ya2, yb2, d2), [*inputs, *watched],
                                  output_gradients=(dya, dyb, dd))
            dinputs = [with_zeros(g, t) for g, t in zip(grads[:3], inputs)]
            if variables is None:
                return dinputs
            return dinputs, variable_gradients(variables, list(zip(watched, grads[3:])))

        return (ya, yb, d), grad_fn

    return run


def run_pair_steps(steps, a, b, logdet, context=None, training=False, seed=None,
                   checkpoint=False):
    """Runs steps[0], steps[1], ... on (a, b); seed of step i is fold_in(seed, i). Traced, as
    one loop over their stacked weights where no gradient is recorded (tfglow.flowpp.loop)."""
    if loop.applies(steps):
        return loop.forward(steps, a, b, logdet, context, training, seed)
    for i, step in enumerate(steps):
        s = None if seed is None else sub_seed(seed, i)
        if checkpoint:
            # tf.custom_gradient takes tensors only: a dummy context where there is none.
            target = step if context is not None else _NoContext(step)
            ctx = context if context is not None else tf.zeros([0], a.dtype)
            a, b, d = checkpointed_pair_step(target, training, s)(a, b, ctx)
        else:
            (a, b), d = step.forward_pair(a, b, context=context, training=training, seed=s)
        logdet += d
    return a, b, logdet


def inverse_pair_steps(steps, a, b, logdet, context=None):
    """Inverse of run_pair_steps (step K-1 first); one loop where run_pair_steps loops."""
    if loop.applies(steps):
        return loop.inverse(steps, a, b, logdet, context)
    for step in reversed(steps):
        (a, b), d = step.inverse_pair(a, b, context=context)
        logdet += d
    return a, b, logdet


class _NoContext:
    """A step whose forward_pair ignores the (dummy) context argument."""

    def __init__(self, step):
        self.step = step

    def forward_pair(self, a, b, context=None, training=False, seed=None):
        return self.step.forward_pair(a, b, training=training, seed=seed)
