"""Flow++ layers: exact inverses, log-determinants = autodiff log|det J| (float64), TFP faces,
and the splits' element order as the official code."""
import numpy as np
import pytest
import tensorflow as tf

from flowpp_helpers import float64_layers, jacobian_logdet, perturb
from tfglow.actnorm import data_dependent_init
from tfglow.flowpp.coupling import AffineCoupling, MixLogisticCoupling
from tfglow.flowpp.dequant import VariationalDequantizer
from tfglow.flowpp.logit import ImgProc
from tfglow.flowpp.norm import pair_norm
from tfglow.flowpp.pair import TupleFlip
from tfglow.flowpp.pointwise import pair_pointwise
from tfglow.flowpp.splits import SpaceToDepth, Split, column_split, space_to_depth
from tfglow.flowpp.step import FlowPPStep

HALF = (2, 4, 2, 3)        # one half [B, H, W, C]: a pair is D = 48 numbers per example
CTX = 4                    # context channels of the conditional coupling


def _pair_layers(rng):
    net = dict(filters=8, blocks=1, heads=2, dropout=0.2, rng=rng)
    return {
        "norm": pair_norm(),
        "pointwise": pair_pointwise(rng),
        "flip": TupleFlip(),
        "mixlogistic": MixLogisticCoupling(components=4, **net),
        "mixlogistic_chandrupatla": MixLogisticCoupling(components=4, inverse="chandrupatla",
                                                        **net),
        "mixlogistic_float64_mixture": MixLogisticCoupling(components=4,
                                                           mixture_dtype="float64", **net),
        "mixlogistic_no_attention": MixLogisticCoupling(components=4, attention=False, **net),
        "mixlogistic_context": MixLogisticCoupling(components=4, context_channels=CTX, **net),
        "affine": AffineCoupling(**net),
        "step": FlowPPStep(components=4, **net),
        "step_context_no_pointwise": FlowPPStep(components=4, context_channels=CTX,
                                                pointwise=False, **net),
    }


PAIR_NAMES = list(_pair_layers(np.random.default_rng(0)))


def _cond(name, rng, dtype):
    if "context" not in name:
        return {}
    ctx = rng.normal(size=HALF[:3] + (CTX,)).astype(dtype)
    return {"context": tf.constant(ctx)}


def _built_pair(name, rng, scale=0.2):
    layer = _pair_layers(rng)[name]
    layer.build(HALF)
    perturb(layer, rng, scale)
    return layer


def _pair(rng, dtype):
    return tf.constant(rng.normal(size=HALF + (2,)).astype(dtype))


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_pair_layer_inverse_float32(name, rng):
    layer = _built_pair(name, rng)
    x, cond = _pair(rng, np.float32), _cond(name, rng, np.float32)
    y, fldj = layer.forward(x, **cond)
    x2, ildj = layer.inverse(y, **cond)
    assert fldj.shape == (HALF[0],) and np.all(np.isfinite(y.numpy()))
    np.testing.assert_allclose(x2.numpy(), x.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", PAIR_NAMES)
def test_pair_layer_logdet_matches_autodiff_jacobian_float64(name, rng):
    with float64_layers():
        layer = _built_pair(name, rng)
    x, cond = _pair(rng, np.float64), _cond(name, rng, np.float64)
    y, fldj = layer.forward(x, **cond)
    assert y.dtype == tf.float64
    expected = jacobian_logdet(lambda t: layer.forward(t, **cond)[0], x)
    np.testing.assert_allclose(fldj.numpy(), expected, rtol=1e-9, atol=1e-8)
    if "mixlogistic" in name or "step" in name:
        return  # the inverse is a root search without gradient: its ildj = -fldj is tested
    expected_inv = jacobian_logdet(lambda t: layer.inverse(t, **cond)[0], y)
    np.testing.assert_allclose(layer.inverse(y, **cond)[1].numpy(), expected_inv, rtol=1e-7,
                               atol=1e-6)


@pytest.mark.parametrize("name", ["mixlogistic", "step_context_no_pointwise", "norm"])
def test_pair_layer_tfp_bijector_is_the_same_map(name, rng):
    layer = _built_pair(name, rng)
    x, cond = _pair(rng, np.float32), _cond(name, rng, np.float32)
    bij = layer.bijector(**cond)
    y, fldj = layer.forward(x, **cond)
    np.testing.assert_array_equal(bij.forward(x).numpy(), y.numpy())
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=4).numpy(),
                               fldj.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bij.inverse(y).numpy(), x.numpy(), atol=1e-5)


SINGLE = (2, 4, 4, 3)


def _single_layers():
    return {"imgproc": ImgProc(), "split_column": Split("column"),
            "split_channel": Split("channel"), "space_to_depth": SpaceToDepth()}


@pytest.mark.parametrize("name", list(_single_layers()))
def test_single_layers_invert_and_logdet_float64(name, rng):
    layer = _single_layers()[name]
    shape = SINGLE if name != "split_channel" else SINGLE[:3] + (4,)
    low, high = (0.0, 256.0) if name == "imgproc" else (-3.0, 3.0)
    x = tf.constant(rng.uniform(low, high, size=shape))
    y, fldj = layer.forward(x)
    x2, ildj = layer.inverse(y)
    assert tuple(y.shape[1:]) == layer.forward_event_shape(shape[1:])
    np.testing.assert_allclose(x2.numpy(), x.numpy(), rtol=1e-12, atol=1e-10)
    expected = jacobian_logdet(lambda t: tf.reshape(layer.forward(t)[0], t.shape), x)
    np.testing.assert_allclose(fldj.numpy(), expected, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-10, atol=1e-9)
    bij = layer.bijector()
    np.testing.assert_array_equal(bij.forward(x).numpy(), y.numpy())


def test_imgproc_is_the_official_formula(rng):
    x = rng.uniform(0, 256, size=SINGLE)
    y, logdet = ImgProc().forward(tf.constant(x))
    p = x * 0.9 / 256 + 0.05
    np.testing.assert_allclose(y.numpy(), -np.log(1 / p - 1), rtol=1e-12)
    hand = (-np.log(p) - np.log(1 - p)).reshape(2, -1).sum(1) + 48 * np.log(0.9 / 256)
    np.testing.assert_allclose(logdet.numpy(), hand, rtol=1e-12)


def test_splits_follow_the_official_element_order(rng):
    x = rng.normal(size=(2, 4, 6, 3))
    a, b = column_split(tf.constant(x))
    np.testing.assert_array_equal(a.numpy(), x[:, :, 0::2])      # even columns
    np.testing.assert_array_equal(b.numpy(), x[:, :, 1::2])      # odd columns
    y = space_to_depth(tf.constant(x)).numpy()
    for dy in range(2):
        for dx in range(2):   # channel (2*dy + dx)*C + c, TF's order (not Glow's c*4 + ...)
            np.testing.assert_array_equal(y[..., (2 * dy + dx) * 3:(2 * dy + dx + 1) * 3],
                                          x[:, dy::2, dx::2, :])


def test_dequantizer_flow_inverse_logdet_and_range(rng):
    image = (2, 4, 4, 3)
    with float64_layers():
        deq = VariationalDequantizer(steps=2, filters=8, blocks=1, components=4, heads=2,
                                     context_channels=CTX, context_blocks=1, rng=rng)
        deq.build(image)
    perturb(deq, rng, 0.1)
    img = tf.constant(rng.integers(0, 256, size=image).astype(np.float64))
    eps = tf.constant(rng.normal(size=image))
    u, log_q = deq.sample(img, noise=eps)
    assert np.all((u.numpy() > 0) & (u.numpy() < 1))
    # log q(u|x) = log N(eps) - log|du/deps|, with the Jacobian by autodiff
    logdet = jacobian_logdet(lambda t: deq.forward(t, image=img)[0], eps)
    log_n = (-0.5 * (np.log(2 * np.pi) + eps.numpy() ** 2)).reshape(2, -1).sum(1)
    np.testing.assert_allclose(log_q.numpy(), log_n - logdet, rtol=1e-9, atol=1e-8)
    eps2, ildj = deq.inverse(u, image=img)
    np.testing.assert_allclose(eps2.numpy(), eps.numpy(), atol=1e-8)
    np.testing.assert_allclose(ildj.numpy(), -deq.forward(eps, image=img)[1].numpy(), rtol=1e-9)


def test_norm_data_dependent_init_normalises_each_activation(rng):
    layer = pair_norm()
    layer.build(HALF)
    x = tf.constant(rng.normal(3.0, 2.5, size=(64,) + HALF[1:] + (2,)).astype(np.float32))
    with data_dependent_init():
        y, _ = layer.forward(x)
    y = y.numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), 1.0, rtol=1e-4)
