"""The multi-scale model: exact encode/decode, log-determinants, init, save/load, sampling."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from conftest import flat_jacobian_logdet, perturb
from tfglow.actnorm import ActNorm
from tfglow.nn import Conv2D


def small_config(**changes):
    base = dict(image_size=16, n_levels=3, depth=8, width=32, flow_permutation=2,
                flow_coupling=1, learntop=True, n_y=10, seed=3)
    return tfglow.GlowConfig(**{**base, **changes})


def images(rng, n, cfg):
    return rng.integers(0, 256, size=(n,) + cfg.image_shape, dtype=np.uint8)


def trained_like(cfg, rng, scale=0.05):
    """Non-zero couplings and priors (perturbed), then data-dependent init so that the
    activations stay normalised as in training, then a small perturbation of everything."""
    model = tfglow.Glow(cfg)
    perturb(model, rng, scale)
    model.initialize(images(rng, 32, cfg))
    perturb(model, rng, scale / 5)
    return model


@pytest.mark.parametrize("changes", [
    dict(),                                            # affine, plain 1x1 conv
    dict(flow_permutation=3),                          # affine, LU 1x1 conv
    dict(flow_coupling=0, flow_permutation=1),         # additive, shuffle
    dict(flow_permutation=0, ycond=True, weight_y=0.01, n_bits_x=5),
])
def test_decode_inverts_encode_for_a_trained_like_deep_model(changes, rng):
    cfg = small_config(**changes)
    model = trained_like(cfg, rng)
    x_uint8 = images(rng, 4, cfg)
    y = rng.integers(0, cfg.n_y, size=4) if cfg.ycond else None
    x = model.preprocess(x_uint8) + 0.5 / cfg.n_bins       # the centre of each pixel's bin
    zs = model.encode(x, y)
    assert [tuple(z.shape[1:]) for z in zs] == list(model.latent_shapes)
    assert sum(int(np.prod(s)) for s in model.latent_shapes) == cfg.n_dims
    x2 = model.decode(zs, y)
    assert np.abs(x2.numpy() - x.numpy()).max() <= 1e-4
    step = 2 ** (8 - cfg.n_bits_x)
    np.testing.assert_array_equal(model.postprocess(x2).numpy(), x_uint8 // step * step)


@pytest.mark.parametrize("changes", [
    dict(flow_coupling=1, flow_permutation=2),
    dict(flow_coupling=1, flow_permutation=3, ycond=True),
    dict(flow_coupling=0, flow_permutation=1),
])
def test_model_logdet_matches_autodiff_jacobian(changes, rng):
    cfg = small_config(image_size=8, n_channels=1, n_levels=2, depth=2, width=8, **changes)
    model = trained_like(cfg, rng, scale=0.2)
    x = tf.constant(rng.uniform(-0.5, 0.5, size=(2,) + cfg.image_shape).astype(np.float32))
    y = tf.constant([1, 7]) if cfg.ycond else None
    flat, logdet = model.forward(x, y=y)
    assert flat.shape == (2, cfg.n_dims)
    expected = flat_jacobian_logdet(lambda t: tf.reshape(model.forward(t, y=y)[0], t.shape), x)
    np.testing.assert_allclose(logdet.numpy(), expected, rtol=1e-4, atol=5e-3)


def _actnorm_outputs(model, x):
    """Runs the encoder step by step (model.step_loop off) and records every ActNorm's output
    (the coupling network's actnorms are folded into their convolutions, so there the Conv2D
    output before ReLU is recorded)."""
    outputs = []
    original, original_conv = ActNorm.forward, Conv2D.apply

    def recording(self, t, **cond):
        y, ld = original(self, t, **cond)
        outputs.append((self, y))
        return y, ld

    def recording_conv(self, prepared, t, relu=False):
        y = original_conv(self, prepared, t, relu=False)
        outputs.append((self.actnorm, y))
        return tf.nn.relu(y) if relu else y

    ActNorm.forward, Conv2D.apply = recording, recording_conv
    model.step_loop = False
    try:
        model.encode_with_logdet(x)
    finally:
        ActNorm.forward, Conv2D.apply = original, original_conv
        del model.step_loop
    return outputs


def test_data_dependent_init_normalises_every_actnorm(rng):
    cfg = small_config(depth=2)
    model = tfglow.Glow(cfg)
    x_uint8 = images(rng, 64, cfg)
    assert model.initialize(x_uint8)
    # The same dequantised batch that initialize saw.
    x = tfglow.objective.dequantize(model.preprocess(x_uint8), cfg.n_bits_x, seed=[cfg.seed, 1])
    outputs = _actnorm_outputs(model, x)
    assert len(outputs) == len(model.actnorm_layers()) == 3 * cfg.n_levels * cfg.depth
    for layer, y in outputs:
        mean = tf.reduce_mean(y, [0, 1, 2]).numpy()
        std = tf.math.reduce_std(y, [0, 1, 2]).numpy()
        np.testing.assert_allclose(mean, 0.0, atol=1e-4, err_msg=layer.path)
        np.testing.assert_allclose(std, 1.0, atol=1e-3, err_msg=layer.path)
        assert float(layer.initialized.numpy()) == 1.0


def test_second_initialize_does_not_reinitialise(rng):
    cfg = small_config(depth=2)
    model = tfglow.Glow(cfg)
    assert model.initialize(images(rng, 16, cfg)) is True
    before = [v.numpy().copy() for v in model.weights]
    assert model.initialize(images(rng, 16, cfg) // 2) is False
    for b, v in zip(before, model.weights):
        np.testing.assert_array_equal(b, v.numpy())


def test_zero_initialised_model_is_squeeze_and_split_only(rng):
    """Before init and training: actnorm, reverse, additive couplings and priors are identities."""
    cfg = small_config(flow_permutation=0, flow_coupling=0, depth=2)
    model = tfglow.Glow(cfg)
    x = tf.constant(rng.uniform(-0.5, 0.5, size=(2,) + cfg.image_shape).astype(np.float32))
    zs, logdet, _ = model.encode_with_logdet(x)
    np.testing.assert_array_equal(logdet.numpy(), 0.0)
    # With depth 2 the two reversals cancel: eps are the squeezed and split pixels.
    z = tfglow.squeeze2d(x)
    for level, eps in enumerate(zs[:-1]):
        half = z.shape[-1] // 2
        np.testing.assert_array_equal(eps.numpy(), z[..., half:].numpy())
        z = tfglow.squeeze2d(z[..., :half])
    np.testing.assert_array_equal(zs[-1].numpy(), z.numpy())


def test_sampling_at_temperature_zero_is_deterministic(rng):
    cfg = small_config(depth=2)
    model = trained_like(cfg, rng)
    a = model.sample(3, temperature=0.0).numpy()
    b = model.sample(3, temperature=0.0, seed=7).numpy()
    np.testing.assert_array_equal(a, b)
    zeros = [tf.zeros((3,) + s) for s in model.latent_shapes]
    np.testing.assert_array_equal(a, model.postprocess(model.decode(zeros)).numpy())
    c = model.sample(3, temperature=1.0, seed=7).numpy()
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(c, model.sample(3, temperature=1.0, seed=7).numpy())


@pytest.mark.parametrize("preset", sorted(tfglow.PRESETS))
def test_every_preset_samples_uint8_images_of_its_shape(preset):
    # The presets' structure (size, levels, channels, coupling, bits, priors) at depth 1 and
    # width 8; the full sizes are built in test_full_presets_build.
    cfg = tfglow.GlowConfig.preset(preset, depth=1, width=8)
    model = tfglow.Glow(cfg)
    y = tf.zeros([1], tf.int32) if cfg.ycond else None
    x = model.sample(1, temperature=0.7, y=y, seed=0)
    assert x.dtype == tf.uint8 and tuple(x.shape) == (1,) + cfg.image_shape


def _expected_parameters(cfg):
    """Trainable parameters of a Glow config, counted from the layer shapes by hand."""
    def nn(c_in, c_out, width):
        return (9 * (c_in + 1) * width + 2 * width      # 3x3 conv (+ edge channel) + actnorm
                + width * width + 2 * width             # 1x1 conv + actnorm
                + 9 * (width + 1) * c_out + 2 * c_out)  # 3x3 conv2d_zeros + b + logs

    def step(c):
        perm = {0: 0, 1: 0, 2: c * c, 3: c * (c - 1) + c}[cfg.flow_permutation]
        out = c if cfg.flow_coupling == 1 else c // 2
        return 2 * c + perm + nn(c // 2, out, cfg.width)

    total, c = 0, 4 * cfg.n_channels
    for level in range(cfg.n_levels):
        total += cfg.depth * step(c)
        if level < cfg.n_levels - 1:
            total += 9 * (c // 2 + 1) * c + 2 * c       # split prior conv2d_zeros
            c *= 2
    if cfg.learntop:
        total += 9 * (2 * c + 1) * 2 * c + 2 * 2 * c
    if cfg.ycond:
        total += (cfg.n_y + 2) * 2 * c
        if cfg.weight_y > 0:
            total += (c + 2) * cfg.n_y
    return total


@pytest.mark.parametrize("preset", ["cifar10", "cifar10_ycond", "celeba", "digits"])
def test_full_presets_build_with_the_expected_parameter_count(preset):
    cfg = tfglow.GlowConfig.preset(preset)
    model = tfglow.Glow(cfg)
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert n == _expected_parameters(cfg)
    assert len(model.flow_steps) == cfg.n_levels * cfg.depth


def test_saved_and_loaded_weights_give_identical_outputs(tmp_path, rng):
    cfg = small_config(flow_permutation=1, depth=2)          # shuffle: a stored permutation
    model = trained_like(cfg, rng)
    path = str(tmp_path / "glow.weights.h5")
    model.save_weights(path)
    other = tfglow.Glow(cfg.replace(seed=99))                # different random permutations
    assert not all(np.array_equal(a.indices.numpy(), b.indices.numpy()) for a, b in zip(
        (s.permutation for s in model.flow_steps), (s.permutation for s in other.flow_steps)))
    other.load_weights(path)
    for a, b in zip(model.flow_steps, other.flow_steps):
        np.testing.assert_array_equal(a.permutation.indices.numpy(), b.permutation.indices.numpy())
    x = images(rng, 4, cfg)
    noise = rng.uniform(size=(4,) + cfg.image_shape).astype(np.float32)
    np.testing.assert_array_equal(model.bits_per_dim(x, noise=noise).numpy(),
                                  other.bits_per_dim(x, noise=noise).numpy())
    assert other.is_initialized
    assert other.initialize(x) is False
    ckpt_dir = str(tmp_path / "ckpt")
    save = tf.train.Checkpoint(model=model).save(ckpt_dir)
    third = tfglow.Glow(cfg.replace(seed=5))
    tf.train.Checkpoint(model=third).restore(save).assert_existing_objects_matched()
    np.testing.assert_array_equal(model.bits_per_dim(x, noise=noise).numpy(),
                                  third.bits_per_dim(x, noise=noise).numpy())


def test_zero_initialised_affine_coupling_scales_by_sigmoid_2(rng):
    """The original's affine coupling starts at scale sigmoid(0 + 2), not at the identity."""
    layer = tfglow.AffineCoupling(8)
    layer.build((2, 4, 4, 6))
    x = tf.constant(rng.normal(size=(2, 4, 4, 6)).astype(np.float32))
    y, logdet = layer.forward(x)
    s = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_array_equal(y[..., :3].numpy(), x[..., :3].numpy())
    np.testing.assert_allclose(y[..., 3:].numpy(), x[..., 3:].numpy() * s, rtol=1e-6)
    np.testing.assert_allclose(logdet.numpy(), 4 * 4 * 3 * np.log(s), rtol=1e-6)
    additive = tfglow.AdditiveCoupling(8)
    additive.build((2, 4, 4, 6))
    np.testing.assert_array_equal(additive.forward(x)[0].numpy(), x.numpy())
