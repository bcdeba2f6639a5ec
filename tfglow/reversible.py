"""Reversible backpropagation through a chain of flow steps (Glow section 6; RevNets, Gomez et al.).

Glow section 6 notes that, because every step of flow is invertible, the activations needed by
the backward pass can be recomputed from the outputs instead of stored, so memory stays
constant in depth. For a chain x_0 -> step_1 -> x_1 -> ... -> step_K -> x_K (each x_k
[B, h, w, c]) with log-determinants d_k [B], the backward pass is, from the upstream gradients
g_K = dL/dx_K and g_ld = dL/d(logdet) (the same for every step, as logdet = logdet_in + sum d_k):

    for k = K .. 1:
        x_{k-1} = step_k.inverse(x_k)                     reconstruct the input
        x_k', d_k = step_k.forward(x_{k-1})              recompute under a tape
        g_{k-1}, dL/dtheta_k = VJP of (x_k', d_k) at (g_k, g_ld)

so only x_K (which the next layer holds anyway) is kept: memory is one step's activations,
whatever K. The price is one inverse and one forward more per step, and the float32
reconstruction error of the inverses accumulates along the chain (tests/test_memory.py
bounds the resulting gradient error).

Implemented as one `tf.custom_gradient` over the chain; the forward runs unrecorded by the
enclosing tapes, so no tape keeps the steps' internal tensors alive.
"""
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import record

from tfglow import scan

from tfglow.recompute import chain_forward, step_vjp, variable_gradients, waiting_for, with_zeros


def chain_backward(steps, y, dy, dlogdet):
    """Reversible backward pass of `chain_forward`, from its output only (module docstring).

    y, dy [B, h, w, c] (the chain's output and its upstream gradient); dlogdet [B]. Returns
    (dx [B, h, w, c], [(tf.Variable, gradient), ...] over all steps).
    """
    pairs = []
    for step in reversed(steps):
        with waiting_for(dy):
            x = step.inverse(y)[0]
            dy, step_pairs = step_vjp(step, x, dy, dlogdet)
        pairs += step_pairs
        y = x
    return dy, pairs


def reversible_chain(steps):
    """fn(x, logdet) -> (y, logdet + sum log|det|) through `steps`, with reversible gradients.

    steps: FlowLayers whose `inverse` inverts `forward` (any tfglow FlowStep: actnorm;
    reverse, shuffle, 1x1 or LU 1x1 convolution; additive or affine coupling). x, y
    [B, h, w, c]; logdet [B]. Gradients flow to x, logdet and every trainable variable of the
    steps; only y is kept for the backward pass.
    """
    steps = tuple(steps)

    @tf.custom_gradient
    def chain(x, logdet):
        with record.stop_recording():
            y, logdet_out = chain_forward(steps, x, logdet, in_order=True)

        def grad_fn(dy, dlogdet, variables=None):
            dy, dlogdet = with_zeros(dy, y), with_zeros(dlogdet, logdet_out)
            dx, pairs = chain_backward(steps, y, dy, dlogdet)
            if variables is None:
                return dx, dlogdet
            return (dx, dlogdet), variable_gradients(variables, pairs)

        return (y, logdet_out), grad_fn

    return chain


def reversible_level(template, raw, params, x, logdet, chains):
    """Mode 2 for a level run as one loop (tfglow.scan): stores only the chains' outputs.

    template: a FlowStep of the level; raw, params: the level's stacked raw weights and their
    forward prepare() ([K, ...] leaves); chains: lengths of consecutive chains summing to K
    (tfglow.memory.chunks). x [B, h, w, c], logdet [B] -> (y, logdet + sum of log|det|).
    The backward loop starts each chain from its stored output and reconstructs the inputs
    of its steps by their inverses (module docstring).
    """
    k_count = scan.n_steps(params)
    ends = np.cumsum(chains) - 1                       # last step of each chain
    slot = np.repeat(np.arange(len(chains)), chains).astype(np.int32)   # chain of each step
    is_end = np.zeros(k_count, bool)
    is_end[ends] = True
    floats, rebuild = scan.split_differentiable(params)

    @tf.custom_gradient
    def run(x, logdet, *floats):
        params = rebuild(floats)
        with record.stop_recording():
            y, logdet_out, outputs = scan.loop_forward(template, params, x, logdet,
                                                       keep=(slot, len(chains)))

        def grad_fn(dy, dlogdet):
            dy, dlogdet = with_zeros(dy, y), with_zeros(dlogdet, logdet_out)
            # Inverse weights (only the permutation's differ) are not differentiated.
            inverse = tf.nest.map_structure(tf.stop_gradient,
                                            template.inverse_prepared(raw, params))
            inverse_flat = tf.nest.flatten(inverse)
            slot_t, is_end_t = tf.constant(slot), tf.constant(is_end)

            def input_of_step(k, y):
                y = tf.cond(tf.gather(is_end_t, k),
                            lambda: tf.gather(outputs, tf.gather(slot_t, k)), lambda: y)
                inv_k = tf.nest.pack_sequence_as(inverse, [tf.gather(t, k) for t in inverse_flat])
                return template.inverse_with(inv_k, y)[0]

            dx, dparams = scan.loop_backward(template, params, k_count, dy, dlogdet,
                                             input_of_step)
            return [dx, dlogdet, *dparams]

        return (y, logdet_out), grad_fn

    return run(x, logdet, *floats)
