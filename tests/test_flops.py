"""tfglow.flops against TensorFlow's own FLOP count of the traced forward pass."""
import pytest
import tensorflow as tf

import tfglow
from tfglow import conv
from tfglow.flops import count_flops


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
