"""The K flow steps of a level as one traced loop body (one traced step per level, not per step).

Every step of a level has the same shapes, so instead of tracing each FlowStep into the graph
(K copies of a step; a cifar10 model has 96, and graph size sets tracing and XLA compile
time), the level's weights are stacked along a leading axis and one step body runs in a
`tf.while_loop`:

    raw    = stack over k of steps[k].raw_weights()         (one [K, ...] tensor per variable)
    params = steps[0].prepare(raw)                          (weights prepared once, batched:
                                                             actnorm folded into kernels, W of
                                                             the LU 1x1 conv, log|det W|, casts)
    for k in 0..K-1:  x, d[k] = steps[0].forward_with(params[k], x)
    logdet += sum over k of d[k]                            (after the loop, see below)

A Glow level keeps these [K, ...] weights as variables (tfglow.stacked): the stack is one
read of each, its gradient one [K, ...] tensor; the steps read their rows for per-step use. Gradient modes (tfglow.memory):
  0  autodiff through the loop: TensorFlow stores each iteration's activations;
  1  `checkpointed_level` (tfglow.recompute): stores each step's input, recomputes the step;
  2  `reversible_level` (tfglow.reversible): stores the outputs of chains of at most
     MAX_REVERSIBLE_CHAIN steps, reconstructs the rest by the inverses.
The data-dependent init of actnorm assigns variables step by step, so it runs the steps one by
one: eagerly each step is one call of a tf.function of the level's first step on row k of its
stacked weights (tfglow.memory.ddi_level), else tfglow.recompute.chain_forward.

The loops carry no running sum: each step's log|det| is written to a TensorArray and the K of
them are added after the loop (`loop_with_logdets`). A body computing `logdet + d` (d the
sum of the step's three log|det|) made TensorFlow's graph fail at the second call of a large
model's train step (the `celeba` preset) with AlreadyExistsError on a "tmp_var"
(tensorflow/tensorflow#23780). Grappler's arithmetic optimizer merges that sum into one AddN
whose first input is the loop variable. When the graph's static peak-memory estimate exceeds
80% of the device's memory (a CPU device counts as 256 MB), Grappler's memory optimizer
rewrites each AddN with an input live at that peak into a TemporaryVariable (accumulated
into, then destroyed) whose creation waits for the node of the AddN's earliest input: here
the loop variable's Switch. A control edge from a Switch is live in the loop's final, exiting
iteration too, where the rest of the body is dead, so there the temporary variable is created
but never destroyed, and the next call finds it. An AddN of tensors computed in the body
waits for one of them, dead in that iteration like the rest of the body
(tests/test_step_loop_repeated_calls.py).
"""
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from tfglow import stacked


def stacked_raw_weights(steps):
    """Nested tuple of [K, ...] tensors: each variable of the K steps, stacked. Steps whose
    weights are one StackedWeights (a Glow level) read each stacked variable once."""
    if stacked.store_of(steps) is not None:
        with stacked.whole_stack():
            return steps[0].raw_weights()
    raws = [step.raw_weights() for step in steps]
    return tf.nest.map_structure(lambda *t: tf.stack(t), *raws)


def n_steps(params):
    """K, the static leading dimension of stacked weights."""
    return int(tf.nest.flatten(params)[0].shape[0])


def is_differentiable(t):
    return t.dtype.is_floating


def split_differentiable(params):
    """(float leaves [list], rebuild(float leaves) -> params with the other leaves as given)."""
    flat = tf.nest.flatten(params)
    mask = [is_differentiable(t) for t in flat]

    def rebuild(floats):
        it = iter(floats)
        return tf.nest.pack_sequence_as(params, [next(it) if m else t for m, t in zip(mask, flat)])

    return [t for t, m in zip(flat, mask) if m], rebuild


def _loop(k_count, body, loop_vars):
    """tf.while_loop over k = 0 .. k_count-1 (a Python loop when eager). body(k, *vars)."""
    if tf.executing_eagerly():
        for k in range(k_count):
            loop_vars = body(tf.constant(k), *loop_vars)
        return loop_vars
    out = tf.while_loop(lambda k, *v: k < k_count, lambda k, *v: (k + 1, *body(k, *v)),
                        (tf.constant(0), *loop_vars), maximum_iterations=k_count)
    return out[1:]


def loop_with_logdets(k_count, body, loop_vars, logdet):
    """_loop over body(k, *vars) -> (*vars, d [B]); returns (*vars after the K steps,
    logdet + the sum of the K d's). The d's go to a TensorArray, summed after the loop, not
    into a loop variable (module docstring: a running sum in the body trips a TF bug)."""
    logdets = tf.TensorArray(logdet.dtype, size=k_count, element_shape=logdet.shape)

    def step(k, logdets, *v):
        *v, d = body(k, *v)
        return (logdets.write(k, d), *v)
    logdets, *out = _loop(k_count, step, (logdets, *loop_vars))
    return (*out, logdet + tf.reduce_sum(logdets.stack(), axis=0))


def row_reader(params):
    """read(k) -> params of step k, from stacked params. Reading through TensorArrays makes the
    gradient of the loop's weights a write per iteration (not a dense [K, ...] add)."""
    flat = tf.nest.flatten(params)
    if tf.executing_eagerly():
        return lambda k: tf.nest.pack_sequence_as(params, [t[int(k)] for t in flat])
    arrays = [tf.TensorArray(t.dtype, size=int(t.shape[0]), element_shape=t.shape[1:])
              .unstack(t) for t in flat]
    return lambda k: tf.nest.pack_sequence_as(params, [a.read(k) for a in arrays])


def in_xla_context():
    """True while tracing a function that XLA compiles (jit_compile=True)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _row_list(t, reverse):
    """A TensorList of the rows of t [K, ...] whose last element is the row wanted first:
    row 0 (reverse: row K-1)."""
    if reverse:
        return tf.raw_ops.TensorListFromTensor(tensor=t, element_shape=t.shape[1:])
    k_count = int(t.shape[0])
    return tf.raw_ops.TensorListScatterV2(
        tensor=t, indices=tf.range(k_count - 1, -1, -1), element_shape=t.shape[1:],
        num_elements=k_count)


def _pop_row(handle, like):
    """(the list without its last element, that element, shaped like a row of `like`)."""
    handle, row = tf.raw_ops.TensorListPopBack(input_handle=handle, element_shape=like.shape[1:],
                                               element_dtype=like.dtype)
    row.set_shape(like.shape[1:])
    return handle, row


def loop_over_rows(params, body, loop_vars, logdet, reverse=False):
    """loop_with_logdets over body(k, params_k, *vars) -> (*vars, d), params_k the rows k of
    the stacked params (reverse: rows K-1-k). Returns (*vars after the K steps, logdet + d's).

    In a graph the rows are popped, one per iteration, from TensorLists carried as loop
    variables. The loop then ends with empty lists, so the gradient of each (zeros at the
    loop's output) is an empty list, and the backward loop pushes one row gradient per
    iteration. Read by index from lists captured by the loop (row_reader), the gradient
    instead starts from a zero-filled copy of every list, as large as the prepared weights
    (0.18 GB per train step for the cifar10 preset at width 512). XLA compiles neither
    TensorListScatterV2 nor lists grown from empty, so under XLA the rows are read by index.
    """
    k_count = n_steps(params)
    flat = tf.nest.flatten(params)
    if tf.executing_eagerly() or in_xla_context():
        read = row_reader(params)

        def indexed(k, *v):
            return body(k, read(k_count - 1 - k if reverse else k), *v)
        return loop_with_logdets(k_count, indexed, tuple(loop_vars), logdet)

    n = len(flat)

    def popped(k, *v):
        handles, row = zip(*[_pop_row(h, t) for h, t in zip(v[:n], flat)])
        *out, d = body(k, tf.nest.pack_sequence_as(params, list(row)), *v[n:])
        return (*handles, *out, d)
    lists = [_row_list(t, reverse) for t in flat]
    out = loop_with_logdets(k_count, popped, (*lists, *loop_vars), logdet)
    return out[n:]


def loop_forward(template, params, x, logdet, keep=None):
    """x [B, h, w, c], logdet [B] -> (x after the K steps, logdet + their log|det|[, kept]).

    template: one FlowStep of the level (its static configuration is used, not its weights);
    params: template.prepare of the stacked weights. keep: None; "inputs": the K step
    inputs are returned third, [K, B, h, w, c]; or (slots, n_slots) with slots an int array
    [K]: after step k its output is stored in slot slots[k] of a [n_slots, B, h, w, c] tensor
    (the last write to a slot wins), returned third.
    """
    if keep is None:
        return loop_over_rows(params, lambda k, p, x: template.forward_with(p, x), (x,), logdet)

    k_count = n_steps(params)
    if keep == "inputs":
        inputs = tf.TensorArray(x.dtype, size=k_count, element_shape=x.shape)

        def body_inputs(k, p, x, inputs):
            inputs = inputs.write(k, x)
            y, d = template.forward_with(p, x)
            return y, inputs, d
        y, inputs, logdet = loop_over_rows(params, body_inputs, (x, inputs), logdet)
        return y, logdet, inputs.stack()

    slots, n_slots = keep
    slots = tf.constant(np.asarray(slots, np.int32))
    kept = tf.zeros(tf.concat([[n_slots], tf.shape(x)], 0), x.dtype)

    def body_keep(k, p, x, kept):
        y, d = template.forward_with(p, x)
        kept = tf.tensor_scatter_nd_update(kept, tf.reshape(slots[k], [1, 1]), y[None])
        return y, kept, d
    y, kept, logdet = loop_over_rows(params, body_keep, (x, kept), logdet)
    return y, logdet, kept


def loop_inverse(template, params, y, logdet):
    """Inverse of loop_forward: y -> (x, logdet + sum of the inverses' log|det|), the steps
    in reverse order. params: template.prepare(stacked raw weights, inverse=True)."""
    return loop_over_rows(params, lambda k, p, y: template.inverse_with(p, y), (y,), logdet,
                          reverse=True)


def step_vjp_with(template, params_k, x, dy, dlogdet):
    """Recomputes y, d = template.forward_with(params_k, x) under a tape and back-propagates.

    Returns (dx [B, h, w, c], [gradient per float leaf of params_k] (zeros where unused)).
    """
    floats, rebuild = split_differentiable(params_k)
    with tf.GradientTape() as tape:
        tape.watch(x)
        tape.watch(floats)
        y, d = template.forward_with(rebuild(floats), x)
    grads = tape.gradient((y, d), [x, *floats], output_gradients=(dy, dlogdet))
    dparams = [tf.zeros_like(f) if g is None else tf.convert_to_tensor(g)
               for f, g in zip(floats, grads[1:])]
    return tf.convert_to_tensor(grads[0]), dparams


def loop_backward(template, params, k_count, dy, dlogdet, input_of_step):
    """The backward pass of the K steps in reverse, one step VJP per iteration.

    input_of_step(k, y) -> x_k, the input of step k, given y = x_{k+1} (the output of step k,
    as reconstructed so far). Returns (dx_0, [stacked gradient [K, ...] per float leaf]).
    """
    floats, _ = split_differentiable(params)
    flat = tf.nest.flatten(params)
    grads = [tf.TensorArray(f.dtype, size=k_count, element_shape=f.shape[1:]) for f in floats]

    def body(i, y, dy, *grads):
        k = k_count - 1 - i
        params_k = tf.nest.pack_sequence_as(params, [tf.gather(t, k) for t in flat])
        x = input_of_step(k, y)
        dx, dparams = step_vjp_with(template, params_k, x, dy, dlogdet)
        return (x, dx, *[g.write(k, d) for g, d in zip(grads, dparams)])

    y0 = tf.zeros_like(dy)
    out = _loop(k_count, body, (y0, dy, *grads))
    return out[1], [g.stack() for g in out[2:]]
