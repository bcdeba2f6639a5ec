"""Hierarchical model layers: masks, resampling, exact inverses and log-determinants equal to
autodiff Jacobians (float64), the unitary 1x1, TFP faces."""
import numpy as np
import pytest
import tensorflow as tf

from flowpp_helpers import float64_layers, jacobian_logdet, perturb
from tfglow.actnorm import data_dependent_init
from tfglow.hierarchical.actnorm import HActNorm
from tfglow.hierarchical.conditioners import ConvConditioner, UNetConditioner
from tfglow.hierarchical.coupling import MaskedAffineCoupling
from tfglow.hierarchical.invconv import FreeFormInvConv, UnitaryInvConv
from tfglow.hierarchical.level_flow import ConditionalFlow
from tfglow.hierarchical.masks import parse_splits, split_masks
from tfglow.hierarchical.noise import minibatch_sigma
from tfglow.hierarchical.norm import instance_norm
from tfglow.hierarchical.resample import bilinear, downsample, upsample
from tfglow.hierarchical.step import FlowStep

COND = 4


def _coupling(kind, res, c, index, rng, cond=True):
    visible, transformed = split_masks(kind, res, c, index)
    kw = dict(cond_channels=COND if cond else None, rng=rng, name="net")
    if kind == "C":
        net = ConvConditioner(c, res, 8, visible, transformed, **kw)
    else:
        net = UNetConditioner(c, res, 8, visible, transformed, downscales=1, mult=1.5, **kw)
    return MaskedAffineCoupling(net)


LAYERS = {  # name -> (builder(rng), input shape [B, H, W, C], conditional kwargs)
    "actnorm": (lambda r: HActNorm(3), (2, 4, 4, 3), None),
    "coupling_C": (lambda r: _coupling("C", 4, 3, 0, r), (2, 4, 4, 3), "cond"),
    "coupling_C_uncond": (lambda r: _coupling("C", 4, 4, 1, r, cond=False), (2, 4, 4, 4), None),
    "coupling_S2": (lambda r: _coupling("S2", 8, 2, 0, r), (2, 8, 8, 2), "cond"),
    "coupling_S4": (lambda r: _coupling("S4", 8, 2, 1, r), (2, 8, 8, 2), "cond"),
    "coupling_S8": (lambda r: _coupling("S8", 16, 1, 2, r, cond=False), (1, 16, 16, 1), None),
    "coupling_1x1": (lambda r: _coupling("C", 1, 6, 0, r), (2, 1, 1, 6), "cond"),
    "freeform_1x1": (lambda r: FreeFormInvConv(3, rng=r), (2, 4, 4, 3), None),
    "unitary_1x1": (lambda r: UnitaryInvConv(4, rng=r), (2, 2, 2, 4), None),
    "step_S2": (lambda r: FlowStep(2, 8, 8, "S2", 0, cond_channels=COND, unet_downscales=1,
                                   rng=r), (2, 8, 8, 2), "cond"),
    "step_C_unitary": (lambda r: FlowStep(3, 4, 8, "C", 1, cond_channels=COND, unitary=True,
                                          rng=r), (2, 4, 4, 3), "cond"),
    "level_flow": (lambda r: ConditionalFlow(2, 8, 8, ["S2", "C"], cond_channels=COND,
                                             unet_downscales=1, rng=r), (2, 8, 8, 2), "affine"),
}


def _inputs(name, shape, rng, dtype):
    x = tf.constant(rng.normal(size=shape).astype(dtype))
    kind = LAYERS[name][2]
    cond = {}
    if kind in ("cond", "affine"):
        cond["cond"] = tf.constant(rng.normal(size=shape[:3] + (COND,)).astype(dtype))
    if kind == "affine":
        b1, b2 = (tf.constant(rng.normal(size=shape).astype(dtype)) for _ in range(2))
        s1, s2 = (tf.constant(rng.uniform(-1, 1, size=shape).astype(dtype)) for _ in range(2))
        cond["affine"] = (b1, s1, b2, s2)
    return x, cond


def _built(name, rng):
    layer = LAYERS[name][0](np.random.default_rng(7))
    perturb(layer, rng, 0.3)
    return layer


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_float32(name, rng):
    layer = _built(name, rng)
    x, cond = _inputs(name, LAYERS[name][1], rng, np.float32)
    y, fldj = layer.forward(x, **cond)
    x2, ildj = layer.inverse(y, **cond)
    assert fldj.shape == (x.shape[0],)
    np.testing.assert_allclose(x2.numpy(), x.numpy(), atol=2e-5)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", list(LAYERS))
def test_logdet_matches_autodiff_jacobian_float64(name, rng):
    with float64_layers():
        layer = _built(name, rng)
    x, cond = _inputs(name, LAYERS[name][1], rng, np.float64)
    y, fldj = layer.forward(x, **cond)
    assert y.dtype == tf.float64
    expected = jacobian_logdet(lambda t: layer.forward(t, **cond)[0], x)
    np.testing.assert_allclose(fldj.numpy(), expected, rtol=1e-7, atol=1e-7)
    # the TFP face gives the same log-determinant
    bij = layer.bijector(**cond)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=3).numpy(),
                               fldj.numpy(), rtol=1e-12, atol=1e-12)


def test_coupling_clips_scale_and_bias(rng):
    layer = _built("coupling_C", rng)
    net = layer.net
    net.scale.b.assign(tf.fill(net.scale.b.shape, 100.0))
    net.bias_b.b.assign(tf.fill(net.bias_b.b.shape, -100.0))
    x, cond = _inputs("coupling_C", (2, 4, 4, 3), rng, np.float32)
    s, b = net(x, cond["cond"])
    _, transformed = split_masks("C", 4, 3, 0)
    np.testing.assert_array_equal(s.numpy(), np.broadcast_to(3.0 * transformed, s.shape))
    np.testing.assert_array_equal(b.numpy(), np.broadcast_to(-5.0 * transformed, b.shape))


@pytest.mark.parametrize("kind,k", [("S2", 2), ("S4", 4), ("S8", 8)])
def test_spatial_masks_complementary_and_flipping(kind, k):
    res, c = 16, 3
    for index in range(4):
        visible, transformed = split_masks(kind, res, c, index)
        np.testing.assert_array_equal(visible + transformed, np.ones((res, res, c)))
        assert set(np.unique(visible)) == {0.0, 1.0}
        # k x k blocks: constant within each block, alternating between neighbours
        blocks = visible[::k, ::k, 0]
        np.testing.assert_array_equal(np.kron(blocks, np.ones((k, k))), visible[..., 0])
        assert np.all(blocks[1:, :] != blocks[:-1, :]) and np.all(blocks[:, 1:] != blocks[:, :-1])
        # step indices count generation steps: flipped (block (0, 0) hidden) on even indices
        assert visible[0, 0, 0] == (0.0 if index % 2 == 0 else 1.0)
    np.testing.assert_array_equal(split_masks(kind, res, c, 0)[0], split_masks(kind, res, c, 1)[1])


def test_channel_mask_sees_first_half_and_never_flips():
    for c, seen in ((3, 1), (4, 2), (508, 254)):
        for index in (0, 1):
            visible, transformed = split_masks("C", 2, c, index)
            np.testing.assert_array_equal(visible[0, 0], [1.0] * seen + [0.0] * (c - seen))


def test_parse_splits_orders_from_the_input_side():
    # "2C,2S2" from the input side = generation order [S2, S2, C, C] (hflow "blocks-channels")
    assert parse_splits("2C,2S2", 4) == ["S2", "S2", "C", "C"]
    assert parse_splits("2C,2S2,2S4,2S8", 8) == ["S8", "S8", "S4", "S4", "S2", "S2", "C", "C"]
    with pytest.raises(ValueError, match="gives 3 steps"):
        parse_splits("2C,S2", 4)
    with pytest.raises(ValueError, match="S3"):
        parse_splits("2C,2S3", 4)
    with pytest.raises(ValueError, match="multiple of 16"):
        split_masks("S8", 8, 1, 0)


def test_unitary_1x1_is_orthogonal_with_zero_logdet(rng):
    layer = UnitaryInvConv(6, scaling=0.1, rng=np.random.default_rng(3))
    w = layer.weight().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-12)
    assert np.linalg.det(w) == pytest.approx(1.0, abs=1e-10)
    assert np.abs(w - np.eye(6)).max() > 0.1  # a real rotation, not the identity
    x = tf.constant(rng.normal(size=(2, 3, 3, 6)).astype(np.float32))
    y, ld = layer.forward(x)
    np.testing.assert_array_equal(ld.numpy(), [0.0, 0.0])
    # orthogonal: norms per pixel are kept
    np.testing.assert_allclose(np.linalg.norm(y.numpy(), axis=-1),
                               np.linalg.norm(x.numpy(), axis=-1), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.5, 3.0, 30.0, 300.0])
def test_expm_equals_scipy_for_small_and_scaled_norms(scale):
    import scipy.linalg
    from tfglow.hierarchical.invconv import expm
    a = np.random.default_rng(7).standard_normal((6, 6)) * scale
    # general (where its exponential is finite) and skew-symmetric (the layer's; orthogonal)
    for m in (a, a - a.T) if scale <= 30 else (a - a.T,):
        want = scipy.linalg.expm(m)
        np.testing.assert_allclose(expm(tf.constant(m)).numpy(), want,
                                   atol=1e-11 * max(np.abs(want).max(), 1.0), rtol=0)


def test_expm_gradient_equals_tf_linalg_expm_eagerly_and_under_xla():
    from tfglow.hierarchical.invconv import expm
    rng = np.random.default_rng(8)
    m = tf.constant(rng.standard_normal((6, 6)) * 3.0)  # needs squarings (|m|_1 > theta13)
    weights = tf.constant(rng.standard_normal((6, 6)))

    def gradient(fn):
        def run(m):
            with tf.GradientTape() as tape:
                tape.watch(m)
                y = tf.reduce_sum(fn(m) * weights)
            return tape.gradient(y, m)
        return run

    want = gradient(tf.linalg.expm)(m).numpy()
    for got in (gradient(expm)(m), tf.function(gradient(expm), jit_compile=True)(m)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12 * np.abs(want).max(), rtol=0)


def test_freeform_1x1_is_scaled_rotation_at_init():
    layer = FreeFormInvConv(5, scaling=0.3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(layer.kernel.numpy() @ layer.kernel.numpy().T * 0.09, np.eye(5),
                               atol=1e-5)  # stored K = Q / M, used W = M K orthogonal


def test_actnorm_data_dependent_init_uses_unbiased_std(rng):
    x = tf.constant(rng.normal(2.0, 3.0, size=(4, 3, 3, 2)).astype(np.float32))
    layer = HActNorm(2)
    with data_dependent_init():
        y, _ = layer.forward(x)
    flat = x.numpy().reshape(-1, 2)
    np.testing.assert_allclose(layer.bias.numpy(), flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), flat.std(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(y.numpy().reshape(-1, 2).std(0, ddof=1), [1.0, 1.0], rtol=1e-5)
    one = HActNorm(2)  # 1x1: hflow keeps the zero init
    with data_dependent_init():
        one.forward(x[:, :1, :1, :])
    np.testing.assert_array_equal(one.bias.numpy(), [0.0, 0.0])


def test_downsample_and_upsample_filters():
    # constant images stay constant (the filters sum to 1 / interpolate), shapes halve / double
    x = tf.fill([1, 8, 8, 2], 3.0)
    np.testing.assert_allclose(downsample(x).numpy(), np.full((1, 4, 4, 2), 3.0), rtol=1e-6)
    np.testing.assert_allclose(upsample(x).numpy(), np.full((1, 16, 16, 2), 3.0), rtol=1e-6)
    # an impulse away from the borders gives the [1, 3, 3, 1] / 8 outer product
    imp = np.zeros((1, 8, 8, 1), np.float32)
    imp[0, 3, 3, 0] = 1.0
    k = np.array([1, 3, 3, 1]) / 8.0
    got = downsample(tf.constant(imp)).numpy()[0, :, :, 0]
    # output (i, j) covers input rows 2i-1 .. 2i+2: row 3 is tap 2 of i = 1, tap 0 of i = 2
    np.testing.assert_allclose(got[1:3, 1:3], np.outer([k[2], k[0]], [k[2], k[0]]), atol=1e-7)


def test_bilinear_matches_half_pixel_and_corner_rules():
    x = tf.constant(np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1) * np.ones((1, 1, 4, 1),
                                                                                 np.float32))
    np.testing.assert_allclose(bilinear(x, 2).numpy()[0, :, 0, 0], [0.5, 2.5])
    np.testing.assert_allclose(bilinear(x, 2, align_corners=True).numpy()[0, :, 0, 0], [0, 3])
    np.testing.assert_allclose(bilinear(x, 8).numpy()[0, :, 0, 0],
                               [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])


def test_instance_norm_and_minibatch_sigma(rng):
    x = rng.normal(1.0, 2.0, size=(3, 4, 4, 2)).astype(np.float32)
    y = instance_norm(tf.constant(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.reshape(3, 16, 2).std(1, ddof=1), 1.0, rtol=1e-4)
    expected = x.reshape(3, -1).std(0, ddof=1).mean()
    assert minibatch_sigma(tf.constant(x)).numpy() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="batch of >= 2"):
        minibatch_sigma(tf.constant(x[:1]))
