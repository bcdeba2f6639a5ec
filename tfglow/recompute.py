"""Recomputing flow steps in the backward pass; gradient checkpointing (`--gradient_checkpointing 1`).

The original release rewrote its gradients with `memory_saving_gradients`, checkpointing the
output of every step of flow: the backward pass keeps only the step boundaries x_0 .. x_K
([B, h, w, c] each) and recomputes each step's internal activations (its coupling network's
hidden layers, [B, h, w, width]) from the stored input when backprop reaches the step. Memory
grows with K by one boundary tensor per step instead of a whole step's activations, for one
extra forward pass of compute.

Each step is a `tf.custom_gradient` whose forward runs unrecorded by enclosing tapes and whose
gradient re-runs `step.forward` under a tape (`step_vjp`), also used by tfglow.reversible.
We do not use `tf.recompute_grad`: it gives the same gradients (Keras variables included) but
in a tf.function its backward pass searches the whole graph upstream of each step for
variables, so tracing a model of n steps costs O(n^2) (277 s instead of ~60 s for the
cifar10 preset at depth 32 here).
"""
import contextlib

import tensorflow as tf
# The only way to run ops unseen by enclosing tapes; TF's own tf.recompute_grad uses it too.
from tensorflow.python.eager import record

from tfglow import scan


def chain_forward(steps, x, logdet, in_order=False):
    """x [B, h, w, c], logdet [B] -> (steps[-1](...steps[0](x)), logdet + sum of their log|det|).

    Adds each step's log|det| to the running logdet in turn, so every gradient mode computes
    bitwise the same forward values as plain backprop. in_order: each step's ops (its weight
    preparation included) wait for its input (see waiting_for), for the memory-saving modes.
    """
    for step in steps:
        with waiting_for(x) if in_order else contextlib.nullcontext():
            x, d = step.forward(x)
        logdet += d
    return x, logdet


def waiting_for(dependency):
    """Context in which every op created (variable reads included) waits for `dependency`.

    In a graph, the executor runs an op as soon as its inputs exist. Recomputation from a
    stored or reconstructed tensor depends only on the forward pass, and the weights a step
    derives from its variables (actnorm folded into kernels, LU products) on nothing at all,
    so without this they may run long before backprop reaches the step and stay live until
    then, which makes memory grow with depth again. A no-op when eager.
    """
    return tf.control_dependencies([dependency])


def step_vjp(step, x, dy, dlogdet):
    """Recomputes y, d = step.forward(x) under a tape and back-propagates (dy, dlogdet).

    x, dy [B, h, w, c]; dlogdet [B]. Returns (dx [B, h, w, c], [(tf.Variable, gradient), ...])
    for the trainable variables the step reads (its coupling network's included); the variables
    are the tf.Variables behind the Keras variables, as `tf.custom_gradient` passes them.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, d = step.forward(x)
    variables = tape.watched_variables()
    grads = tape.gradient((y, d), [x, *variables], output_gradients=(dy, dlogdet))
    return tf.convert_to_tensor(grads[0]), list(zip(variables, grads[1:]))


def variable_gradients(variables, pairs):
    """Gradients for `variables` (as tf.custom_gradient lists them) from (variable, grad) pairs,
    summed per variable; None for a variable without one (e.g. non-trainable)."""
    total = {}
    for var, grad in pairs:
        if grad is not None:
            key = var.ref()
            # Rows of a stacked variable (tfglow.stacked) have IndexedSlices gradients.
            grad = tf.convert_to_tensor(grad)
            total[key] = grad if key not in total else total[key] + grad
    return [total.get(v.ref()) for v in variables]


def with_zeros(grad, like):
    """An upstream gradient, or zeros shaped as `like` where TF passes None (unused output)."""
    return tf.zeros_like(like) if grad is None else grad


def checkpointed_step(step):
    """fn(x [B, h, w, c]) -> (step(x), log|det| [B]) that stores only x for the backward pass."""
    @tf.custom_gradient
    def run(x):
        with record.stop_recording(), waiting_for(x):
            y, d = step.forward(x)

        def grad_fn(dy, dlogdet, variables=None):
            dy, dlogdet = with_zeros(dy, y), with_zeros(dlogdet, d)
            with waiting_for(dy):
                dx, pairs = step_vjp(step, x, dy, dlogdet)
            if variables is None:
                return dx
            return dx, variable_gradients(variables, pairs)

        return (y, d), grad_fn

    return run


def checkpointed_chain(steps, x, logdet):
    """As `chain_forward`, storing only each step's input x_k for the backward pass."""
    for step in steps:
        x, d = checkpointed_step(step)(x)
        logdet += d
    return x, logdet


def checkpointed_level(template, params, x, logdet):
    """Mode 1 for a level run as one loop (tfglow.scan): stores only each step's input.

    template: a FlowStep of the level; params: its prepare() of the level's stacked weights
    ([K, ...] leaves). x [B, h, w, c], logdet [B] -> (y, logdet + sum of log|det|). The
    forward runs unrecorded and keeps the K step inputs ([K, B, h, w, c]); the backward pass
    recomputes each step from its input in a reverse loop.
    """
    k_count = scan.n_steps(params)
    floats, rebuild = scan.split_differentiable(params)

    @tf.custom_gradient
    def run(x, logdet, *floats):
        params = rebuild(floats)
        with record.stop_recording():
            y, logdet_out, inputs = scan.loop_forward(template, params, x, logdet, keep="inputs")

        def grad_fn(dy, dlogdet):
            dy, dlogdet = with_zeros(dy, y), with_zeros(dlogdet, logdet_out)
            dx, dparams = scan.loop_backward(template, params, k_count, dy, dlogdet,
                                             lambda k, _: tf.gather(inputs, k))
            return [dx, dlogdet, *dparams]

        return (y, logdet_out), grad_fn

    return run(x, logdet, *floats)
