"""tfglow.conv: the matmul forms of convolution equal tf.nn.conv2d, values and gradients."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import perturb
from tfglow import conv
from tfglow.nn import Conv2D, Conv2DZeros, deinterleave


@pytest.fixture(params=["matmul", "native"])
def impl(request):
    conv.set_conv_impl(request.param)
    yield request.param
    conv.set_conv_impl("auto")


def _value_and_grads(fn, x, kernel, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
        loss = tf.reduce_sum(y * upstream)
    return (y, *tape.gradient(loss, [x, kernel]))


def _edge_reference(x, kernel):
    """The original's edge padding: zero-pad, append the pad-indicator channel, VALID conv."""
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    ind = conv.edge_indicator(int(x.shape[1]), int(x.shape[2]), kh, kw)
    ind = tf.tile(tf.constant(ind), [int(x.shape[0]), 1, 1, 1])
    inputs = tf.concat([conv.pad_same(x, kh, kw), ind], axis=-1)
    return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID")


# (B, H, W, C, D, kh, kw): narrow-to-wide (im2col), wide-to-narrow (shift-add), 1x1,
# rectangular images and kernels.
SHAPES = [(2, 8, 8, 3, 16, 3, 3), (2, 8, 6, 16, 6, 3, 3), (3, 4, 4, 8, 8, 1, 1),
          (2, 5, 7, 4, 10, 3, 1), (2, 6, 5, 12, 2, 1, 3), (1, 4, 4, 6, 6, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_conv2d_same_equals_tf_conv2d_with_gradients(shape, impl, rng):
    b, h, w, c, d, kh, kw = shape
    x = tf.constant(rng.normal(size=(b, h, w, c)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(kh, kw, c, d)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(b, h, w, d)).astype(np.float32))
    got = _value_and_grads(conv.conv2d_same, x, kernel, upstream)
    want = _value_and_grads(lambda t, k: tf.nn.conv2d(t, k, 1, "SAME"), x, kernel, upstream)
    for g, e, name in zip(got, want, ("y", "dx", "dkernel")):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[5:] != (1, 1)])
def test_edge_padded_conv_equals_the_concatenated_indicator_channel(shape, impl, rng):
    b, h, w, c, d, kh, kw = shape
    x = tf.constant(rng.normal(size=(b, h, w, c)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(kh, kw, c + 1, d)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(b, h, w, d)).astype(np.float32))

    def ours(t, k):
        return conv.unflat(conv.edge_padded_conv_flat(t, k), t, d)

    got = _value_and_grads(ours, x, kernel, upstream)
    want = _value_and_grads(_edge_reference, x, kernel, upstream)
    for g, e, name in zip(got, want, ("y", "dx", "dkernel")):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[5:] != (1, 1)])
def test_kernels_prepared_stacked_equal_each_kernel_alone(shape, impl, rng):
    # A level prepares its K kernels at once ([K, ...]) and convolves with row k in its loop.
    b, h, w, c, d, kh, kw = shape
    x = tf.constant(rng.normal(size=(b, h, w, c)).astype(np.float32))
    for edge in (False, True):
        kernels = tf.constant(rng.normal(size=(3, kh, kw, c + edge, d)).astype(np.float32))
        stacked = conv.prepare_kernel(kernels, edge_padded=edge)
        assert all(int(t.shape[0]) == 3 for t in stacked)
        for k in range(3):
            got = conv.conv_prepared_flat(x, tuple(t[k] for t in stacked), (kh, kw), d, edge)
            want = (conv.edge_padded_conv_flat(x, kernels[k]) if edge else
                    conv.conv2d_same_flat(x, kernels[k]))
            np.testing.assert_array_equal(got.numpy(), want.numpy())
            ref = _edge_reference(x, kernels[k]) if edge else tf.nn.conv2d(x, kernels[k], 1,
                                                                           "SAME")
            np.testing.assert_allclose(got.numpy(), tf.reshape(ref, [-1, d]).numpy(),
                                       rtol=1e-4, atol=1e-4)


def test_gather_positions_gradient_is_the_scatter_add_of_repeated_reads(rng):
    # Sources read 0, 1 or several times: the gradient (a gather through inverse_index and a
    # sum) must equal numpy's unbuffered scatter-add, and the values tf.gather's.
    t = tf.constant(rng.normal(size=(3, 7, 4)).astype(np.float32))
    for positions in ([0, 3, 3, 6, 3, 1], [5], [2, 2, 2, 2, 0, 0, 6, 1, 4]):
        positions = np.array(positions, np.int32)
        upstream = rng.normal(size=(3, len(positions), 4)).astype(np.float32)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = conv.gather_positions(t, positions)
            loss = tf.reduce_sum(y * upstream)
        np.testing.assert_array_equal(y.numpy(), tf.gather(t, positions, axis=1).numpy())
        want = np.zeros(t.shape, np.float32)
        np.add.at(want, (slice(None), positions), upstream)
        np.testing.assert_allclose(tape.gradient(loss, t).numpy(), want, rtol=1e-6, atol=1e-6)
    inv = conv.inverse_index(np.array([2, 0, 2]), 4)
    np.testing.assert_array_equal(inv, [[1, 3], [3, 3], [0, 2], [3, 3]])


def test_dynamic_batch_dimension(impl, rng):
    kernels = [tf.constant(rng.normal(size=(3, 3, 5, d)).astype(np.float32)) for d in (2, 9)]
    fn = tf.function(lambda t, k: conv.conv2d_same(t, k), autograph=False)
    for kernel in kernels:
        for batch in (1, 3):
            x = tf.constant(rng.normal(size=(batch, 4, 4, 5)).astype(np.float32))
            spec = tf.TensorSpec([None, 4, 4, 5], tf.float32)
            y = fn.get_concrete_function(spec, tf.TensorSpec(kernel.shape, tf.float32))(x, kernel)
            np.testing.assert_allclose(y.numpy(), tf.nn.conv2d(x, kernel, 1, "SAME").numpy(),
                                       rtol=1e-4, atol=1e-4)


def test_auto_is_matmul_without_gpu_and_bad_names_are_refused():
    expected = "native" if tf.config.list_logical_devices("GPU") else "matmul"
    assert conv.conv_impl() == expected
    with pytest.raises(ValueError, match="conv impl 'cudnn'"):
        conv.set_conv_impl("cudnn")


def test_deinterleave_puts_even_then_odd_channels(rng):
    t = rng.normal(size=(2, 3, 3, 8)).astype(np.float32)
    np.testing.assert_array_equal(deinterleave(tf.constant(t)).numpy(),
                                  np.concatenate([t[..., 0::2], t[..., 1::2]], axis=-1))


def test_conv2d_folds_its_actnorm_into_the_kernel(impl, rng):
    layer = Conv2D(12, (3, 3), rng=rng)
    layer.build((2, 6, 6, 4))
    perturb(layer, rng, 0.3)
    x = tf.constant(rng.normal(size=(2, 6, 6, 4)).astype(np.float32))
    an = layer.actnorm
    expected = (_edge_reference(x, layer.kernel) + an.bias) * tf.exp(an.logs)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer(x, relu=True).numpy(), np.maximum(expected.numpy(), 0),
                               rtol=1e-4, atol=1e-5)


def test_conv2d_zeros_deinterleaved_equals_strided_slices(impl, rng):
    layer = Conv2DZeros(10, (3, 3))
    layer.build((2, 5, 5, 6))
    perturb(layer, rng, 0.3)
    x = tf.constant(rng.normal(size=(2, 5, 5, 6)).astype(np.float32))
    full = layer(x).numpy()
    even, odd = layer.call_deinterleaved(x)
    np.testing.assert_allclose(even.numpy(), full[..., 0::2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(odd.numpy(), full[..., 1::2], rtol=1e-5, atol=1e-6)
