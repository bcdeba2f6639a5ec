"""Component facts that the tests of tfglow.flow do not cover: orders, layouts, equivalences."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from conftest import perturb
from tfglow.actnorm import ActNorm, data_dependent_init
from tfglow.invconv import InvConv1x1, LUInvConv1x1
from tfglow.conv import edge_indicator
from tfglow.nn import Conv2D, Conv2DZeros


def test_squeeze_uses_the_originals_channel_order(rng):
    x = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    y = tfglow.squeeze2d(tf.constant(x)).numpy()
    assert y.shape == (2, 3, 2, 12)
    for i, j, c, di, dj in np.ndindex(3, 2, 3, 2, 2):
        assert y[:, i, j, 4 * c + 2 * di + dj].tolist() == x[:, 2 * i + di, 2 * j + dj, c].tolist()
    np.testing.assert_array_equal(tfglow.unsqueeze2d(tf.constant(y)).numpy(), x)


def _edge_padded_conv_reference(x, kernel):
    """The original's edge padding: zero-pad, append the pad-indicator channel, VALID conv."""
    kh, kw = kernel.shape[:2]
    a, b = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, [(0, 0), (a, a), (b, b), (0, 0)])
    ind = np.zeros(padded.shape[:3] + (1,), np.float32)
    ind[:, :a], ind[:, -a:], ind[:, :, :b], ind[:, :, -b:] = 1, 1, 1, 1
    inputs = np.concatenate([padded, ind], axis=-1)
    return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID").numpy()


def test_edge_padding_equals_the_concatenated_indicator_channel(rng):
    conv = Conv2DZeros(5, (3, 3))
    conv.build((2, 6, 5, 4))
    perturb(conv, rng, 0.5)
    x = rng.normal(size=(2, 6, 5, 4)).astype(np.float32)
    expected = (_edge_padded_conv_reference(x, conv.kernel.numpy()) + conv.bias.numpy()) \
        * np.exp(3 * conv.logs.numpy())
    np.testing.assert_allclose(conv(tf.constant(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert edge_indicator(2, 2, 3, 3)[0, :, :, 0].tolist() == [
        [1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]


def test_conv2d_has_no_bias_normal_005_init_and_actnorm():
    conv = Conv2D(64, (3, 3), rng=np.random.default_rng(0))
    conv.build((1, 8, 8, 16))
    w = conv.kernel.numpy()
    assert w.shape == (3, 3, 17, 64)  # + the edge channel, as the original
    assert abs(w.std() - 0.05) < 0.003 and abs(w.mean()) < 0.003
    assert {v.path.split("/")[-1] for v in conv.trainable_variables} == {"W", "bias", "logs"}


def test_plain_and_lu_convolutions_agree_on_the_same_matrix(rng):
    plain = InvConv1x1(rng=rng)
    plain.build((2, 3, 3, 6))
    perturb(plain, rng, 0.2)
    lu = LUInvConv1x1(rng=rng)
    lu.build((2, 3, 3, 6))
    lu.set_from_matrix(plain.kernel.numpy())
    np.testing.assert_allclose(lu.weight().numpy(), plain.kernel.numpy(), atol=1e-6)
    x = tf.constant(rng.normal(size=(2, 3, 3, 6)).astype(np.float32))
    (y1, l1), (y2, l2) = plain.forward(x), lu.forward(x)
    np.testing.assert_allclose(y2.numpy(), y1.numpy(), atol=1e-5)
    np.testing.assert_allclose(l2.numpy(), l1.numpy(), rtol=1e-5)
    np.testing.assert_allclose(lu.inverse_weight().numpy(), plain.inverse_weight().numpy(), atol=1e-5)


def test_invconv_starts_as_a_rotation_with_zero_logdet(rng):
    layer = InvConv1x1(rng=rng)
    layer.build((1, 2, 2, 8))
    w = layer.kernel.numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
    assert abs(float(layer.weight_and_logdet()[1])) < 1e-5


@pytest.mark.parametrize("layer", [tfglow.Reverse(), tfglow.Shuffle(rng=np.random.default_rng(5))])
def test_reverse_and_shuffle_are_permutations(layer, rng):
    layer.build((1, 2, 2, 10))
    x = tf.constant(np.arange(10, dtype=np.float32)[None, None, None].repeat(2, 1).repeat(2, 2))
    y = layer.forward(x)[0].numpy()[0, 0, 0]
    assert sorted(y.tolist()) == list(range(10))
    if isinstance(layer, tfglow.Reverse):
        assert y.tolist() == list(range(9, -1, -1))
    else:
        assert y.tolist() != list(range(10))
        assert y.tolist() == layer.indices.numpy().tolist()


def test_actnorm_init_statistics_are_averaged_over_replicas(rng):
    """Two replicas with different halves of the batch initialise as one device on all of it."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = (rng.normal(size=(8, 4, 4, 3)) * [1, 2, 3] + [0.5, -1, 2]).astype(np.float32)
    x[4:] += 1.0
    with strategy.scope():
        replicated = ActNorm()
        replicated.build(x.shape)
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[4 * ctx.replica_id_in_sync_group:][:4]))

    @tf.function
    def init(values):
        def fn(t):
            with data_dependent_init():
                return replicated.forward(t)[0]
        return strategy.run(fn, (values,))

    init(halves)
    single = ActNorm()
    single.build(x.shape)
    with data_dependent_init():
        single.forward(tf.constant(x))
    np.testing.assert_allclose(replicated.bias.numpy(), single.bias.numpy(), rtol=1e-5)
    np.testing.assert_allclose(replicated.logs.numpy(), single.logs.numpy(), rtol=1e-5)
    y = single.forward(tf.constant(x))[0].numpy()
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1, atol=1e-4)
