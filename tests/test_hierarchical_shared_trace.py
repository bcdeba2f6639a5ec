"""Shared step traces (tfglow.hierarchical.shared_trace): in a graph, a level's steps run as
calls of one traced function per structure with their own weights and masks. The same values
and gradients as the steps traced one by one, one trace per structure, a graph that does not
grow with K, and no step running on another step's weights."""
import numpy as np
import pytest
import tensorflow as tf

from flowpp_helpers import float64_layers, perturb
from hierarchical_helpers import images, tiny_config
from tfglow.hierarchical import HierarchicalFlow
from tfglow.hierarchical.level_flow import ConditionalFlow

COND, RES, C = 4, 8, 2
SPLITS = ["C", "S2", "S2", "S4", "C", "S4"]  # two structures: 3-conv and U-Net couplings


def _flow(splits, rng, unitary=False, cond=True):
    with float64_layers():
        flow = ConditionalFlow(C, RES, 8, splits, cond_channels=COND if cond else None,
                               unet_downscales=1, unitary=unitary,
                               rng=np.random.default_rng(7))
    perturb(flow, rng, 0.3)  # non-zero scales, so every step's s and b matter
    return flow


def _inputs(rng, cond=True):
    t = lambda *s: tf.constant(rng.normal(size=s))
    x = t(2, RES, RES, C)
    kw = {"cond": t(2, RES, RES, COND) if cond else None,
          "affine": (t(2, RES, RES, C), 0.3 * t(2, RES, RES, C), t(2, RES, RES, C),
                     0.3 * t(2, RES, RES, C))}
    return x, kw


def _forward_and_grads(flow, x, kw, share, checkpoint=False):
    flow.share_traces, flow.checkpoint = share, checkpoint
    sources = [t for t in [kw["cond"], *kw["affine"]] if t is not None]

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch([x, *sources])
            z, ld = flow.forward(x, **kw)
            # weights differ per position, so a step reading the wrong mask or row shows
            w = tf.cos(tf.reshape(tf.range(tf.size(z), dtype=z.dtype), tf.shape(z)))
            out = tf.reduce_sum(w * z) + tf.reduce_sum(ld * tf.constant([1.0, -2.0], z.dtype))
        grads = tape.gradient(out, [x, *sources, *flow.trainable_variables])
        return z, ld, grads

    z, ld, grads = run(x)
    return z.numpy(), ld.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("checkpoint", [False, True])
def test_shared_traces_give_the_same_values_and_gradients(rng, checkpoint):
    flow = _flow(SPLITS, rng)
    x, kw = _inputs(rng)
    z0, ld0, g0 = _forward_and_grads(flow, x, kw, share=False, checkpoint=checkpoint)
    z1, ld1, g1 = _forward_and_grads(flow, x, kw, share=True, checkpoint=checkpoint)
    assert flow._shared.n_structures == 2
    np.testing.assert_allclose(z1, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ld1, ld0, rtol=1e-12)
    assert len(g0) == len(g1) == 6 + len(flow.trainable_variables)
    for v, a, b in zip(["x", "cond", "start_b", "start_s", "end_b", "end_s",
                        *[v.path for v in flow.trainable_variables]], g0, g1):
        assert np.abs(a).max() > 0, v
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * np.abs(a).max(), err_msg=v)


@pytest.mark.parametrize("unitary,cond", [(False, True), (True, False)])
def test_shared_inverse_inverts_and_equals_the_step_by_step_inverse(rng, unitary, cond):
    flow = _flow(SPLITS, rng, unitary=unitary, cond=cond)
    x, kw = _inputs(rng, cond=cond)
    outs = []
    for share in (False, True):
        flow.share_traces = share
        z, ld = tf.function(lambda x: flow.forward(x, **kw))(x)
        back, ld_inv = tf.function(lambda z: flow.inverse(z, **kw))(z)
        outs.append((z.numpy(), back.numpy(), ld.numpy(), ld_inv.numpy()))
    (z0, back0, ld0, inv0), (z1, back1, ld1, inv1) = outs
    np.testing.assert_allclose(z1, z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back1, back0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back1, x.numpy(), atol=1e-9)
    np.testing.assert_allclose(inv1, -ld1, rtol=1e-12)


def test_one_trace_per_structure_and_direction(rng):
    flow = _flow(SPLITS, rng)
    x, kw = _inputs(rng)
    flow.share_traces = True
    for _ in range(2):  # a second outer trace reuses the inner ones
        z, _ = tf.function(lambda x: flow.forward(x, **kw))(x)
        tf.function(lambda z: flow.inverse(z, **kw))(z)
    fns = flow._shared._functions
    assert len(fns) == 4  # 2 structures x (forward, inverse)
    assert [fn.experimental_get_tracing_count() for fn in fns.values()] == [1] * 4


def _graph_ops(flow, x, kw):
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z, ld = flow.forward(x, **kw)
            out = tf.reduce_sum(z) + tf.reduce_sum(ld)
        grad = tape.gradient(out, x)
        assert grad is not None
        return grad

    return len(run.get_concrete_function(x).graph.get_operations())


def test_graph_grows_with_structures_not_steps(rng):
    """Forward and backward graph: ops per further step, shared against one by one."""
    x, kw = _inputs(rng)
    counts = {}
    for share in (False, True):
        for splits in (["C", "S2"], ["C", "S2"] * 4):
            flow = _flow(splits, rng)
            flow.share_traces = share
            counts[share, len(splits)] = _graph_ops(flow, x, kw)
    per_step = {s: (counts[s, 8] - counts[s, 2]) / 6 for s in (False, True)}
    assert per_step[True] < 0.2 * per_step[False], per_step


def test_a_trace_reading_a_variable_directly_is_refused(rng):
    """A step whose math reads a variable not passed in would run every step on the template's
    copy: refused with the step's name."""
    flow = _flow(["C", "C"], rng)
    outside = tf.Variable(tf.constant(2.0, tf.float64))
    actnorm = flow.steps[0].actnorm
    forward = actnorm.forward
    actnorm.forward = lambda x, **k: (lambda y, ld: (y * outside, ld))(*forward(x, **k))
    x, kw = _inputs(rng)
    with pytest.raises(RuntimeError, match="step1: the trace it shares with step0 captures 1 "):
        tf.function(lambda x: flow.forward(x, **kw))(x)


def test_model_loss_and_gradients_equal_with_and_without_shared_traces(rng):
    """The whole model (U-Net and 3-conv couplings, the end block's unitary 1x1 convolutions
    and its 1x1 couplings) in a graph: the same loss and gradients."""
    cfg = tiny_config()
    m = HierarchicalFlow(cfg)
    u8 = images(rng, 4, cfg)
    m.initialize(u8)
    perturb(m, rng, 0.02)
    results = []
    for share in (False, True):
        m.share_traces = share
        assert m.share_traces is share

        @tf.function
        def run(u8):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(m.loss_terms(u8, seed=[3, 4], training=True)["loss"])
            return loss, tape.gradient(loss, m.trainable_variables)

        loss, grads = run(u8)
        results.append((loss.numpy(), np.concatenate([g.numpy().ravel() for g in grads])))
    assert all(f._shared.n_structures <= 2 for f in m.flows)
    assert any(fn.experimental_get_tracing_count() for f in m.flows
               for fn in f._shared._functions.values())
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    g0, g1 = results[0][1], results[1][1]
    assert np.abs(g0).max() > 0
    assert np.linalg.norm(g1 - g0) <= 1e-5 * np.linalg.norm(g0)
