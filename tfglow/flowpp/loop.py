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
stack) and one split of their gradient. (A Glow level stores its weights stacked instead,
tfglow.stacked: there the per-variable stacking and optimizer copies dominated the graph.)

Gradient checkpointing (`checkpoint=True`): one custom gradient over the whole loop stores the
K step inputs (the per-step form, tfglow.flowpp.step.checkpointed_pair_step, stored the same)
and the backward loop recomputes step k from its input under a tape, as
tfglow.recompute.checkpointed_level does for a Glow level.

Not used eagerly (nothing is traced), in the data-dependent init (it assigns variables, which
a StatelessScope would only record) or for fewer than two steps (`applies`).
"""
import keras
import tensorflow as tf
# Runs ops unseen by enclosing tapes (as tfglow.recompute).
from tensorflow.python.eager import record

from tfglow.actnorm import ddi_active
from tfglow.flowpp.conditioner import sub_seed
from tfglow.recompute import with_zeros
from tfglow.scan import loop_with_logdets, row_reader


def _signature(step):
    return [(tuple(v.shape), v.dtype) for v in step.variables]


def applies(steps):
    """True iff `steps` run as one loop: traced, outside the data-dependent init, at least two
    steps, each with variables of the same shapes and dtypes in the same order."""
    if len(steps) < 2 or tf.executing_eagerly() or ddi_active():
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


def forward(steps, a, b, logdet, context=None, training=False, seed=None, checkpoint=False):
    """tfglow.flowpp.step.run_pair_steps as one loop; the same values up to the order of the
    log|det| sum. a, b [B, H, W, C] halves; logdet [B]; context [B, H, W/2, C'] or None."""
    weights = stacked_weights(steps)
    body = _step_body(steps[0], False, training, seed)
    if checkpoint:
        ya, yb, d = _checkpointed(body, weights, a, b, context)
        return ya, yb, logdet + d
    read = row_reader(weights)

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


def _checkpointed(body, weights, a, b, context):
    """(a', b', sum of log|det| [B]) of the loop, storing only the K input pairs for backprop."""
    k_count = int(weights[0].shape[0])
    floats = [j for j, w in enumerate(weights) if w.dtype.is_floating]
    has_context = context is not None
    # tf.custom_gradient takes tensors only: a dummy context where there is none.
    ctx = context if has_context else tf.zeros([0], a.dtype)

    @tf.custom_gradient
    def run(a, b, ctx, *weights):
        read = row_reader(list(weights))

        def step(k, a, b, c, row):
            return body(k, a, b, row, c if has_context else None)

        with record.stop_recording():
            inputs = [tf.TensorArray(t.dtype, size=k_count, element_shape=t.shape) for t in (a, b)]

            def keep_body(k, a, b, in_a, in_b):
                in_a, in_b = in_a.write(k, a), in_b.write(k, b)
                (a, b), d = step(k, a, b, ctx, read(k))
                return a, b, in_a, in_b, d
            zeros = tf.zeros([tf.shape(a)[0]], a.dtype)
            ya, yb, in_a, in_b, d_sum = loop_with_logdets(k_count, keep_body, (a, b, *inputs),
                                                          zeros)
            in_a, in_b = in_a.stack(), in_b.stack()

        def grad_fn(dya, dyb, dd):
            dya, dyb, dd = with_zeros(dya, ya), with_zeros(dyb, yb), with_zeros(dd, d_sum)
            dweights = [tf.TensorArray(weights[j].dtype, size=k_count,
                                       element_shape=weights[j].shape[1:]) for j in floats]
            # Context gradients per step, summed after the loop (a running sum in a loop body
            # trips a TensorFlow bug: tfglow.scan's docstring).
            dctx = tf.TensorArray(ctx.dtype, size=k_count, element_shape=ctx.shape)

            def back(i, da, db, dctx, *dweights):
                k = k_count - 1 - i
                # tf.identity: a tensor of this loop body to watch (not the captured input).
                xa, xb, c = tf.gather(in_a, k), tf.gather(in_b, k), tf.identity(ctx)
                row = read(k)
                watched = [xa, xb, c, *(row[j] for j in floats)]
                with tf.GradientTape() as tape:
                    tape.watch(watched)
                    (ra, rb), d = step(k, xa, xb, c, row)
                grads = tape.gradient((ra, rb, d), watched, output_gradients=(da, db, dd))
                grads = [tf.convert_to_tensor(with_zeros(g, t)) for g, t in zip(grads, watched)]
                return (grads[0], grads[1], dctx.write(k, grads[2]),
                        *(ta.write(k, g) for ta, g in zip(dweights, grads[3:])))

            _, da, db, dctx, *dweights = tf.while_loop(
                lambda i, *_: i < k_count, lambda i, *v: (i + 1, *back(i, *v)),
                (tf.constant(0), dya, dyb, dctx, *dweights), maximum_iterations=k_count)
            dw = [None] * len(weights)
            for j, ta in zip(floats, dweights):
                dw[j] = ta.stack()
            return [da, db, tf.reduce_sum(dctx.stack(), axis=0), *dw]

        return (ya, yb, d_sum), grad_fn

    return run(a, b, ctx, *weights)
