"""A chain of Flow++ steps as one traced loop body: the graph holds one step per stage, not K.

The K steps of a stage (and of the variational dequantizer) have the same layers and shapes.
Traced one by one, a stage puts K copies of a step into the graph (at the cifar10 preset each
is 10 gated residual blocks with attention), and graph size sets tracing, Grappler and export
time. Traced, the steps instead run as one `tf.while_loop` whose body is steps[0]'s code with
its variables reading as row k of the K steps' stacked weights:

    W_j = stack over k of steps[k].variables[j]                      [K, *shape_j]
    for k in 0..K-1:
        (a, b), d_k = steps[0].forward_pair(a, b)  with variables := W[k], seed fold_in(seed, k)
    logdet += sum over k of d_k                                      (after the loop)

`keras.StatelessScope(state_mapping)` makes a Keras variable read as a given tensor, so the
step's code is unchanged. The variables stay per step, so checkpoints, optimizer slots and
`stage.steps[k]` are as before; the price is one copy of the steps' weights per call (the
stack). (A Glow level stores its weights stacked instead, tfglow.stacked: there the
per-variable stacking and optimizer copies dominated the graph.)

Used only where no gradient is recorded (evaluation, sampling, encode/decode, export): in the
train step the loop was slower than the steps traced one by one (cifar10 preset, batch 8, one
run alternating trees: trace and first call 61 s against 46 s, then 4.2 s a step against 3.7 s),
while a forward pass runs at the same speed either way. Nor is it used eagerly (nothing is
traced), in the data-dependent init (it assigns variables, which a StatelessScope would only
record) or for fewer than two steps (`applies`).
"""
import keras
import tensorflow as tf
# Whether a gradient tape records here (the train step's does).
from tensorflow.python.eager import record

from tfglow.actnorm import ddi_active
from tfglow.flowpp.conditioner import sub_seed
from tfglow.scan import loop_with_logdets, row_reader


def _signature(step):
    return [(tuple(v.shape), v.dtype) for v in step.variables]


def applies(steps):
    """True iff `steps` run as one loop: traced, no tape recording, outside the data-dependent
    init, at least two steps, each with variables of the same shapes and dtypes in order."""
    if (len(steps) < 2 or tf.executing_eagerly() or ddi_active()
            or record.could_possibly_record()):
        return False
    first = _signature(steps[0])
    return all(_signature(step) == first for step in steps[1:])


def stacked_weights(steps):
    """[W_j]: the j-th variable of every step, stacked: [K, *shape_j] (steps[0].variables order)."""
    return [tf.stack([tf.convert_to_tensor(v) for v in vs])
            for vs in zip(*(step.variables for step in steps))]


def _step_body(template, inverse, training, seed):
    """body(k, a, b, row, context) -> ((a', b'), log|det| [B]): template's step (its inverse)
    with its variables reading as `row` (the tensors of step k) and the seed of step k."""
    variables = template.variables

    def body(k, a, b, row, context):
        with keras.StatelessScope(state_mapping=list(zip(variables, row))):
            if inverse:
                return template.inverse_pair(a, b, context=context)
            s = None if seed is None else sub_seed(seed, k)
            return template.forward_pair(a, b, context=context, training=training, seed=s)
    return body


def forward(steps, a, b, logdet, context=None, training=False, seed=None):
    """tfglow.flowpp.step.run_pair_steps as one loop; the same values up to the order of the
    log|det| sum. a, b [B, H, W, C] halves; logdet [B]; context [B, H, W/2, C'] or None."""
    body = _step_body(steps[0], False, training, seed)
    read = row_reader(stacked_weights(steps))

    def loop_body(k, a, b):
        (a, b), d = body(k, a, b, read(k), context)
        return a, b, d
    return loop_with_logdets(len(steps), loop_body, (a, b), logdet)


def inverse(steps, a, b, logdet, context=None):
    """tfglow.flowpp.step.inverse_pair_steps as one loop (step K-1 first)."""
    k_count = len(steps)
    body = _step_body(steps[0], True, False, None)
    read = row_reader(stacked_weights(steps))

    def loop_body(i, a, b):
        (a, b), d = body(None, a, b, read(k_count - 1 - i), context)
        return a, b, d
    return loop_with_logdets(k_count, loop_body, (a, b), logdet)
