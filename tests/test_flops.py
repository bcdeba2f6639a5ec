"""tfglow.flops against TensorFlow's own FLOP count of the traced forward pass."""
import collections

import numpy as np
import pytest
import tensorflow as tf

import tfglow
from tfglow import conv
from tfglow.flops import count_flops, train_gemms


def _tf_counted_flops(model, cfg):
    """FLOPs of the Conv2D and MatMul ops in the forward graph at batch 1 (tf profiler)."""
    spec = tf.TensorSpec((1,) + cfg.image_shape, tf.float32)
    graph = tf.function(lambda x: model.forward(x)[0], autograph=False).get_concrete_function(
        spec).graph
    opts = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output().account_displayed_op_only(True).build())
    opts["account_type_regexes"] = ["Conv2D", "MatMul"]
    return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops


@pytest.mark.parametrize("coupling", [0, 1])
def test_count_equals_tensorflows_count_of_the_forward_graph(coupling):
    # Native convolutions at batch 1: the edge-padding term is then a 1-channel conv of the
    # same size as the count's "+1" input channel. Plain 1x1 conv: no LU matmuls per layer.
    cfg = tfglow.GlowConfig(image_size=16, n_levels=2, depth=2, width=24, flow_permutation=2,
                            flow_coupling=coupling, learntop=False)
    model = tfglow.Glow(cfg)
    model.build((1,) + cfg.image_shape)
    # Every step traced on its own: TF's profiler counts a while loop's body only once.
    model.step_loop = False
    conv.set_conv_impl("native")
    try:
        counted = _tf_counted_flops(model, cfg)
    finally:
        conv.set_conv_impl("auto")
    flops = count_flops(cfg)
    assert flops.forward == counted
    assert flops.train_step == 3 * flops.forward


def test_cifar10_preset_is_about_24_gflop_per_training_image():
    flops = count_flops(tfglow.GlowConfig.preset("cifar10"))
    assert 23e9 < flops.train_step < 25e9  # the figure issue #6 quotes for this model
    assert flops.coupling > 0.98 * flops.forward


def _graph_gemms(graph):
    """Counter of (m, k, n, transpose_a, transpose_b) over the MatMul ops of a graph and the
    functions it calls."""
    found = collections.Counter()
    for g in [graph] + [f.graph for f in graph._functions.values() if hasattr(f, "graph")]:
        for op in g.get_operations():
            if op.type != "MatMul":
                continue
            a, b = (op.inputs[i].shape.as_list() for i in (0, 1))
            ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
            m, k = (a[1], a[0]) if ta else (a[0], a[1])
            found[(m, k, b[0] if tb else b[1], ta, tb)] += 1
    return found


@pytest.mark.parametrize("coupling", [0, 1])
def test_train_gemms_are_the_matmuls_of_the_traced_train_step(coupling):
    cfg = tfglow.GlowConfig(image_size=16, n_levels=2, depth=2, width=24, flow_permutation=2,
                            flow_coupling=coupling, learntop=True)
    batch = 5
    model = tfglow.Glow(cfg)
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch,) + cfg.image_shape),
                    tf.uint8)
    model.initialize(x)
    model.step_loop = False  # every product in the outer graph, once per step
    noise = tf.zeros((batch,) + cfg.image_shape)

    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.bits_per_dim(x, noise=noise))
        return tape.gradient(loss, model.trainable_variables)

    graph = tf.function(grads, autograph=False).get_concrete_function(x).graph
    # The per-pixel products: those with a B * H * W dimension.
    rows = {batch * (cfg.image_size >> (level + 1)) ** 2 for level in range(cfg.n_levels)}
    found = _graph_gemms(graph)
    found = collections.Counter({key: n for key, n in found.items() if rows & set(key[:3])})
    listed = collections.Counter()
    for g in train_gemms(cfg, batch):
        listed[(g.m, g.k, g.n, g.transpose_a, g.transpose_b)] += g.count
    assert found == listed
