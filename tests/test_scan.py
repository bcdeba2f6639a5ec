"""tfglow.scan.loop_over_rows: the rows of stacked weights, one per loop iteration.

In a graph the rows are popped from TensorLists the loop empties (its gradient then starts
from empty lists, not zero-filled copies of the weights); eagerly and under XLA they are read
by index. Every way must give the values and gradients of a Python loop over the rows.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfglow import scan

K, B, C = 5, 3, 4


def body(k, p, x):
    """A step whose output depends on the order of the rows: x [B, C] -> (x', d [B])."""
    w, b = p["w"], p["b"]
    y = tf.tanh(tf.matmul(x, w) + b) + 0.5 * x
    return y, tf.reduce_sum(y * y, axis=1) * tf.cast(k + 1, y.dtype)


def python_loop(params, x, logdet, reverse):
    for k in range(K):
        row = K - 1 - k if reverse else k
        x, d = body(tf.constant(k), {n: t[row] for n, t in params.items()}, x)
        logdet = logdet + d
    return x, logdet


def loss_and_grads(run, params, x, logdet, reverse):
    with tf.GradientTape() as tape:
        tape.watch([params, x])
        y, out = run(params, x, logdet, reverse)
        loss = tf.reduce_sum(y * y) + tf.reduce_sum(out)
    return loss, tape.gradient(loss, [params["w"], params["b"], x])


def looped(params, x, logdet, reverse):
    return scan.loop_over_rows(params, body, (x,), logdet, reverse=reverse)


@pytest.fixture
def inputs():
    rng = np.random.default_rng(3)
    params = {"w": tf.constant(rng.normal(size=(K, C, C)).astype(np.float32) * 0.5),
              "b": tf.constant(rng.normal(size=(K, C)).astype(np.float32))}
    return params, tf.constant(rng.normal(size=(B, C)).astype(np.float32)), tf.zeros([B])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("how", ["eager", "graph", "xla"])
def test_rows_in_order_with_the_python_loops_values_and_gradients(how, reverse, inputs):
    want = loss_and_grads(python_loop, *inputs, reverse)
    run = {"eager": lambda *a: loss_and_grads(looped, *a, reverse),
           "graph": tf.function(lambda *a: loss_and_grads(looped, *a, reverse),
                                autograph=False),
           "xla": tf.function(lambda *a: loss_and_grads(looped, *a, reverse),
                              autograph=False, jit_compile=True)}[how]
    got = run(*inputs)
    # Float rounding only (XLA's tanh differs in the last bits); a row out of order is O(1).
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * float(np.abs(w).max()))


def op_types(graph):
    """Types of every op in a graph and in the functions it calls (loop bodies included)."""
    types = [op.type for op in graph.get_operations()]
    for f in graph._functions.values():
        types += [node.op for node in f.definition.node_def]
    return types


@pytest.mark.parametrize("jit", [False, True])
def test_graph_loop_pops_its_rows_and_xla_does_not(jit, inputs):
    fn = tf.function(lambda *a: loss_and_grads(looped, *a, False), autograph=False,
                     jit_compile=jit)
    types = op_types(fn.get_concrete_function(*inputs).graph)
    # Each stacked tensor goes into a list to pop from; XLA compiles no TensorListScatterV2.
    # (Other list ops are TensorFlow's own: the loop gradient's saved activations, logdets.)
    assert types.count("TensorListScatterV2") == (0 if jit else 2)
