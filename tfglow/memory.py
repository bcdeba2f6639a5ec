"""The three gradient modes of the flow steps (the original's `--gradient_checkpointing`).

    0  plain backprop: every step's activations are stored      memory O(K * step)
    1  gradient checkpointing (tfglow.recompute): only each step's input is stored and the step
       is recomputed in the backward pass, as the original     memory O(K * boundary + step)
    2  reversible backprop (tfglow.reversible; Glow section 6): nothing inside a chain of
       steps is stored; inputs are reconstructed by the inverses. One chain per level, cut
       into chains of at most MAX_REVERSIBLE_CHAIN steps for accuracy   memory O(step)

All three compute bitwise the same forward values and, up to float32 rounding in the
recomputation (mode 2: in the inverses too), the same gradients. The data-dependent init of
actnorm (which assigns variables during the forward pass) always runs in mode 0, step by step.

Each mode runs a level's steps as one loop over their stacked weights (tfglow.scan;
`level_forward`), storing the same tensors as the per-step form (`loop=False`: one
custom gradient per step or chain, every step traced separately).
"""
import tensorflow as tf

from tfglow import scan, stacked
from tfglow.actnorm import cross_replica_mean, ddi_active, ddi_mean_fn
from tfglow.recompute import chain_forward, checkpointed_chain, checkpointed_level
from tfglow.reversible import reversible_chain, reversible_level

#: gradient_checkpointing values.
GRADIENT_MODES = {0: "backprop", 1: "checkpoint", 2: "reversible"}

#: Mode 2 reconstructs at most this many steps from one stored output. The float32 rounding
#: of each inverse is amplified by the following inverses (measured: ~1.25x per step on the
#: perturbed, initialised "trained-like" models of the tests, 16 px, width 32), so the input of
#: a 32-step chain came back with ~1e-3 error and some variables' gradients 10-26% off; with
#: chains of <= 16 steps the worst relative gradient error there was 7e-5.
#: A level of K steps thus stores ceil(K / 16) - 1 extra step boundaries ([B, h, w, c] each,
#: small next to one step's activations). None: one chain per level, whatever its depth.
MAX_REVERSIBLE_CHAIN = 16


def check_gradient_mode(mode):
    """Validates a gradient_checkpointing value; returns it as an int."""
    if isinstance(mode, bool) or mode not in GRADIENT_MODES:
        raise ValueError(f"gradient_checkpointing={mode!r} must be one of {sorted(GRADIENT_MODES)} "
                         f"({GRADIENT_MODES})")
    return int(mode)


# The steps have no tensor-dependent control flow; not converting them with autograph (inside
# a tf.function) avoids re-converting the per-call closures of modes 1 and 2 at every call,
# which took about a third of the tracing time.
@tf.autograph.experimental.do_not_convert
def run_flow_steps(steps, x, logdet, mode=0, loop=True):
    """x [B, h, w, c], logdet [B] -> (x through `steps`, logdet + their log|det| [B]).

    steps: a sequence of same-shaped FlowSteps (one level of the model); mode: GRADIENT_MODES
    key. loop: trace one step body for all of them (tfglow.scan); False traces each step.
    """
    mode = check_gradient_mode(mode)
    if ddi_active() and loop and traced_ddi_applies(steps):
        return ddi_level(steps, x, logdet)
    if ddi_active() or not steps:
        return chain_forward(steps, x, logdet)
    if loop:
        return level_forward(steps, x, logdet, mode)
    if mode == 0:
        return chain_forward(steps, x, logdet)
    if mode == 1:
        return checkpointed_chain(steps, x, logdet)
    for chain in chunks(steps, MAX_REVERSIBLE_CHAIN):
        x, logdet = reversible_chain(chain)(x, logdet)
    return x, logdet


def traced_ddi_applies(steps):
    """ddi_level serves `steps`: eager, one replica with the default statistic averaging,
    and their weights one StackedWeights (a Glow level)."""
    ctx = tf.distribute.get_replica_context()
    return (tf.executing_eagerly() and stacked.store_of(steps) is not None
            and ddi_mean_fn() is cross_replica_mean
            and (ctx is None or ctx.num_replicas_in_sync == 1))


def ddi_level(steps, x, logdet):
    """The data-dependent init's pass through a level, step after step as chain_forward, but
    each step a call of one tf.function of steps[0] on row k of the level's weights
    (stacked.row_index): traced once per level instead of running ~190 ops eagerly per step
    (the eager init took 4-5 s of the cifar10 preset's start-up at width 512)."""
    store = stacked.store_of(steps)
    fn = store.__dict__.get("_ddi_step")
    if fn is None:
        def ddi_step(x, k):
            with stacked.row_index(k):
                return steps[0].forward(x)
        fn = tf.function(ddi_step, autograph=False)
        object.__setattr__(store, "_ddi_step", fn)  # not tracked by Keras or checkpoints
    for k in range(len(steps)):
        x, d = fn(x, tf.constant(k, tf.int32))
        logdet += d
    return x, logdet


def level_forward(steps, x, logdet, mode):
    """run_flow_steps through one loop over the steps' stacked weights (tfglow.scan)."""
    template = steps[0]
    raw = scan.stacked_raw_weights(steps)
    params = template.prepare(raw)
    if mode == 0:
        return scan.loop_forward(template, params, x, logdet)
    if mode == 1:
        return checkpointed_level(template, params, x, logdet)
    chains = [len(c) for c in chunks(steps, MAX_REVERSIBLE_CHAIN)]
    return reversible_level(template, raw, params, x, logdet, chains)


@tf.autograph.experimental.do_not_convert
def run_flow_steps_inverse(steps, y, logdet, loop=True):
    """Inverse of run_flow_steps: y -> (x, logdet + the inverses' log|det| [B])."""
    if not loop or not steps:
        for step in reversed(steps):
            y, d = step.inverse(y)
            logdet += d
        return y, logdet
    template = steps[0]
    raw = scan.stacked_raw_weights(steps)
    return scan.loop_inverse(template, template.prepare(raw, inverse=True), y, logdet)


def chunks(steps, size):
    """steps split into consecutive runs of at most `size` (all of them if size is None),
    as even as possible: 32 steps by 16 -> 16 + 16; 20 by 16 -> 10 + 10."""
    steps = list(steps)
    if size is None or len(steps) <= size:
        return [steps]
    n = -(-len(steps) // size)
    bounds = [round(i * len(steps) / n) for i in range(n + 1)]
    return [steps[a:b] for a, b in zip(bounds, bounds[1:])]
