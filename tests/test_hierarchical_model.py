"""HierarchicalFlow: exact encode/decode, the ELBO and its per-level terms, level-of-detail
sampling, the paper preset's parameter count, bad input."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import perturb
from hierarchical_helpers import images, tiny_config
from tfglow.hierarchical import HierarchicalConfig, HierarchicalFlow
from tfglow.hierarchical.eqlr import zero_init


@pytest.fixture(scope="module")
def model():
    cfg = tiny_config()
    m = HierarchicalFlow(cfg)
    rng = np.random.default_rng(0)
    assert m.initialize(images(rng, 8, cfg))
    assert not m.initialize(images(rng, 8, cfg))  # once
    perturb(m, rng, 0.02)  # looks trained: zero-initialised scales become non-trivial
    return m


def test_decode_encode_is_exact(model, rng):
    x = model.bin_centres(images(rng, 3, model.config))
    zs = model.encode(x)
    assert [tuple(z.shape[1:]) for z in zs] == [(16, 16, 3), (8, 8, 4), (1, 1, 32)]
    np.testing.assert_allclose(model.decode(zs).numpy(), x.numpy(), atol=1e-4)
    # the decoded images postprocess to the input pixels exactly
    u8 = images(rng, 3, model.config)
    np.testing.assert_array_equal(model.postprocess(model.decode(model.encode(
        model.bin_centres(u8)))).numpy(), u8)
    # the generated latents are the encoder's
    _, ys, t = model.decode(zs, return_latents=True)
    ys_enc, t_enc = model.encoder_latents(x)
    np.testing.assert_allclose(ys[1].numpy(), ys_enc[1].numpy(), atol=1e-4)
    np.testing.assert_allclose(t.numpy(), t_enc.numpy(), atol=1e-4)


def test_initialize_sets_actnorms_above_1x1_only(model):
    step = model.levels[0].flow.steps[0]
    assert np.abs(step.actnorm.bias.numpy()).max() > 0.0
    fresh = HierarchicalFlow(tiny_config())
    fresh.initialize(images(np.random.default_rng(1), 8, fresh.config))
    np.testing.assert_array_equal(fresh.end.prior_flow.steps[0].actnorm.bias.numpy(), 0.0)


def test_per_level_terms_add_up_to_the_bound(model, rng):
    cfg = model.config
    u8 = images(rng, 4, cfg)
    t = model.loss_terms(u8, seed=[3, 4])
    dims = [16 * 16 * 3, 8 * 8 * 4, 4, 28]
    names = ["bits_16", "bits_8", "bits_prior", "bits_1"]
    assert set(names) <= set(t) and set(model.stats) <= set(t)
    elbo = -sum(t[n].numpy() * d * np.log(2.0) for n, d in zip(names, dims))
    np.testing.assert_allclose(t["elbo"].numpy(), elbo, rtol=1e-5)
    np.testing.assert_allclose(t["bits_x"].numpy(), -elbo / (768 * np.log(2.0)) + 8.0,
                               rtol=1e-5)
    loss = sum(w * t[n].numpy() for w, n in zip(list(cfg.loss_weights) + [1, 1], names))
    np.testing.assert_allclose(t["loss"].numpy(), loss, rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dim(u8, seed=[3, 4]).numpy(), t["bits_x"].numpy())


def test_elbo_is_a_bound_the_importance_weighted_estimate_tightens(model, rng):
    """E[ELBO] <= log p(x): with S noise samples, the mean ELBO (analytic noise entropy) stays
    above the IWAE bound in bits/dim; the analytic entropy is the mean of -log q(y~|x)."""
    u8 = images(rng, 4, model.config)
    noise = model.draw_noise([4, 16, 16, 3], [9, 9])
    s = 6
    terms = [model.loss_terms(u8, noise=noise, seed=[5, i]) for i in range(s)]
    elbo_bits = np.mean([t["bits_x"].numpy() for t in terms], 0)
    iw_bits = model.importance_weighted_bits_per_dim(u8, s, seed=[6, 0], noise=noise).numpy()
    assert np.all(elbo_bits >= iw_bits - 1e-3), (elbo_bits, iw_bits)
    x = model.preprocess(u8) + noise
    raw = [model._terms(x, [7, i]) for i in range(12)]
    h = raw[0]["entropy"].numpy()
    neg_log_q = np.mean([-r["log_q"].numpy() for r in raw], 0)
    k = 8 * 8 * 4 + 32  # noisy dimensions per image
    assert np.all(np.abs(neg_log_q - h) < 4 * np.sqrt(k / 2 / 12)), (neg_log_q, h)
    # deterministic encoders (noise 0): no entropy and no noise, the terms are then exact
    det = model.loss_terms(u8, noise=noise, seed=[5, 0], alphas=False)
    np.testing.assert_array_equal(det["log_q"].numpy(), 0.0)
    det2 = model.loss_terms(u8, noise=noise, seed=[8, 1], alphas=False)
    np.testing.assert_array_equal(det["bits_x"].numpy(), det2["bits_x"].numpy())


def test_level_of_detail_keeps_coarse_latents_exactly(model, rng):
    x = model.bin_centres(images(rng, 2, model.config))
    zs = model.encode(x)
    new = model.resample_finer(zs, 1, temperature=0.8, seed=11)
    for a, b in zip(new[1:], zs[1:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(new[0].numpy() - zs[0].numpy()).max() > 0.1
    _, ys_a, t_a = model.decode(zs, return_latents=True)
    x_b, ys_b, t_b = model.decode(new, return_latents=True)
    np.testing.assert_array_equal(ys_a[1].numpy(), ys_b[1].numpy())  # the 8x8 latent
    np.testing.assert_array_equal(t_a.numpy(), t_b.numpy())          # the 1x1 latent
    assert np.abs(ys_a[0].numpy() - ys_b[0].numpy()).max() > 1e-3    # the image varies
    # level 0 redraws nothing; level L = 2 redraws all but the 1x1 latent
    same = model.resample_finer(zs, 0, seed=1)
    np.testing.assert_array_equal(model.decode(same).numpy(), model.decode(zs).numpy())
    varied = model.vary_details(model.postprocess(x), 2, seed=3)
    assert varied.dtype == tf.uint8 and varied.shape == (2, 16, 16, 3)


def test_sample_temperatures(model):
    zs = model.draw_latents(64, temperatures=[0.5, 0.0, 1.0], seed=2)
    assert np.std(zs[0].numpy()) == pytest.approx(0.5, rel=0.05)
    np.testing.assert_array_equal(zs[1].numpy(), 0.0)
    assert np.std(zs[2].numpy()) == pytest.approx(1.0, rel=0.1)
    # hflow's default: levels at T, the 1x1 latent at 1
    zs = model.draw_latents(64, temperature=0.0, seed=2)
    assert np.all(zs[0].numpy() == 0) and np.std(zs[2].numpy()) > 0.5
    s = model.sample(2, temperature=0.7, seed=4)
    assert s.dtype == tf.uint8 and s.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(s.numpy(), model.sample(2, temperature=0.7, seed=4).numpy())


def test_flow_inputs_are_detached_and_groups_partition_variables(model, rng):
    groups = model.parameter_groups()
    ids = [id(v) for vs in groups.values() for v in vs]
    assert len(ids) == len(set(ids)) == len(model.trainable_variables)
    assert all("conv_e" in v.path for v in groups["encoders"])
    u8 = images(rng, 4, model.config)
    with tf.GradientTape(persistent=True) as tape:
        t = model.loss_terms(u8, seed=[1, 1], training=True)
        prior, level0 = tf.reduce_mean(t["bits_prior"]), tf.reduce_mean(t["bits_16"])
    enc = groups["encoders"]
    # the prior flow sees only the detached y_prior: no gradient reaches the encoders
    assert all(g is None for g in tape.gradient(prior, enc))
    # the image level reaches them only through its decoder's conditioning
    grads = [g for g in tape.gradient(level0, enc) if g is not None]
    assert grads and max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0


def test_paper_preset_parameter_count_from_shapes():
    """Config A: 77,381,708 trainable parameters from our variables' shapes; hflow's count adds
    its frozen split masks (2,769,920), 80,151,628 = the paper's 80.15 M (see config.py)."""
    with zero_init():  # shapes only matter: skip the random draws
        m = HierarchicalFlow(HierarchicalConfig.preset("celebahq256"))
    trainable = int(sum(np.prod(v.shape) for v in m.trainable_variables))
    masks = sum(k * 2 * c * r * r for k, c, r in zip((4, 8, 8, 8), (3, 4, 8, 8),
                                                     (256, 128, 32, 8)))
    masks += 8 * 2 * 4 + 8 * 2 * 508 + 2 * 512
    assert m.hflow_parameter_count() == trainable + masks
    assert round(m.hflow_parameter_count() / 1e6, 2) == 80.15
    assert trainable == 77_381_708
    assert HierarchicalConfig().latent_dims == 271_360  # the paper's |y|


def test_presets_build_and_validate():
    for name in ("cpu32", "digits16"):
        cfg = HierarchicalConfig.preset(name)
        assert HierarchicalConfig.from_dict(cfg.to_dict()) == cfg
    m = HierarchicalFlow(HierarchicalConfig.preset("digits16"))
    zs = m.draw_latents(1, seed=0)
    assert m.decode(zs).shape == (1, 16, 16, 1)


@pytest.mark.parametrize("changes,match", [
    (dict(resolutions=(16, 4), channels=(3, 4)), "lowest level must be 8x8"),
    (dict(splits=("C,S2", "C,S8")), r"S8 needs a multiple of 16 px; level 1 is 8"),
    (dict(flow_noise=(0.1, 0.2)), "flow_noise needs one alpha"),
    (dict(decoder_noise=(-0.1,)), "decoder_noise must be >= 0"),
    (dict(num_layers=(3, 2)), "gives 2 steps; the level has 3"),
    (dict(channels=(1, 4)), "channels\\[0\\]=1 must equal n_channels=3"),
    (dict(loss_weights=(1.0,)), "loss_weights has 1 entries"),
])
def test_bad_config_names_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


def test_bad_input_names_the_argument(model, rng):
    u8 = images(rng, 2, model.config)
    with pytest.raises(TypeError, match="x_uint8 must be uint8"):
        model.loss_terms(u8.astype(np.float32))
    with pytest.raises(ValueError, match=r"x_uint8 must have shape \[B, 16, 16, 3\]"):
        model.loss_terms(u8[:, :8])
    with pytest.raises(TypeError, match="x must be float images"):
        model.encode(u8)
    with pytest.raises(ValueError, match="batch of >= 2 images"):
        model.loss_terms(u8[:1])
    zs = model.encode(model.bin_centres(u8))
    with pytest.raises(ValueError, match="zs must be a list of 3 latents"):
        model.decode(zs[:2])
    with pytest.raises(ValueError, match=r"zs\[1\] must have shape \[B, 8, 8, 4\]"):
        model.decode([zs[0], zs[0], zs[2]])
    with pytest.raises(ValueError, match="temperatures needs 3 values"):
        model.sample(1, temperatures=[0.7, 1.0])
    with pytest.raises(ValueError, match="level=4 must be in 0..3"):
        model.resample_finer(zs, 4)
    with pytest.raises(ValueError, match="n_samples=0"):
        model.importance_weighted_bits_per_dim(u8, 0)
    with pytest.raises(TypeError, match="expected a HierarchicalConfig"):
        HierarchicalFlow({"image_size": 16})


def test_prior_distribution_is_the_end_prior_flow(model, rng):
    d = model.prior_distribution
    y = tf.constant(rng.normal(size=(3, 1, 1, 4)).astype(np.float32))
    z, ld = model.end.prior_flow.forward(y)
    expected = -0.5 * np.sum(z.numpy() ** 2, axis=(1, 2, 3)) - 2 * np.log(2 * np.pi) + ld.numpy()
    np.testing.assert_allclose(d.log_prob(y).numpy(), expected, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(rng):
    """Every flow step (U-Net and 3-conv couplings, conditional and not), decoder and encoder
    recomputed in the backward pass: the same loss, the same gradients to float rounding, for
    the flows' variables and, through cond and the affine maps, the decoders'."""
    cfg = HierarchicalConfig.preset("digits16", num_layers=(2, 1), splits=("2S2", "C"),
                                    end_layers=(1, 1), seed=3)
    m = HierarchicalFlow(cfg, gradient_checkpointing=1)
    assert m.gradient_checkpointing is True and m.levels[0].flow.checkpoint
    u8 = images(rng, 4, cfg)
    m.initialize(u8)  # the init pass runs without checkpointing (actnorms assign variables)
    assert np.abs(m.levels[0].flow.steps[0].actnorm.bias.numpy()).max() > 0
    perturb(m, rng, 0.02)
    net = m.levels[1].flow.steps[0].coupling.net
    calls, call = [], net.call
    net.call = lambda *a, **k: calls.append(1) or call(*a, **k)
    results = []
    for checkpoint in (False, True):
        m.gradient_checkpointing = checkpoint
        calls.clear()
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(m.loss_terms(u8, seed=[3, 4], training=True)["loss"])
        grads = tape.gradient(loss, m.trainable_variables)
        assert len(calls) == 1 + checkpoint  # recomputed once in the backward pass
        assert all(g is not None for g in grads)
        results.append((loss.numpy(), [g.numpy() for g in grads]))
    del net.call
    assert results[0][0] == results[1][0]
    groups = {id(v): g for g, vs in m.parameter_groups().items() for v in vs}
    reached = set()
    for v, g0, g1 in zip(m.trainable_variables, results[0][1], results[1][1]):
        # float32 rounding of sums whose terms are as large as the largest entry (the biases
        # before an instance norm have a true gradient of 0: rounding noise only)
        np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(g0).max()),
                                   err_msg=v.path)
        if np.abs(g0).max() > 0:
            reached.add(groups[id(v)])
    assert reached == {"flows", "decoders", "encoders"}
    with pytest.raises(ValueError, match="gradient_checkpointing=2 must be 0 or 1"):
        m.gradient_checkpointing = 2


@pytest.mark.slow  # ~30 s of XLA compilation
def test_xla_compiles_the_loss_and_its_gradients_with_the_same_values(model, rng):
    """Under jit_compile (the end block's matrix exponential included), the same loss and
    gradients. Encoder noise off (alphas=False): XLA's stateless normals differ from the CPU
    kernel's for the same seed, so with noise the two are different draws."""
    u8 = tf.constant(images(rng, 4, model.config))
    noise = model.draw_noise(tf.shape(u8), tf.constant([1, 2]))

    def loss_and_grads(u8, noise):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(u8, None, noise, tf.constant([3, 4]),
                                                   alphas=False)["loss"])
        return loss, tape.gradient(loss, model.trainable_variables)

    loss0, grads0 = loss_and_grads(u8, noise)
    loss1, grads1 = tf.function(loss_and_grads, jit_compile=True)(u8, noise)
    np.testing.assert_allclose(loss1.numpy(), loss0.numpy(), rtol=1e-5)
    flat0 = np.concatenate([g.numpy().ravel() for g in grads0 if g is not None])
    flat1 = np.concatenate([g.numpy().ravel() for g in grads1 if g is not None])
    assert flat0.size == flat1.size and np.abs(flat0).max() > 0
    assert np.linalg.norm(flat1 - flat0) <= 1e-4 * np.linalg.norm(flat0)


def test_train_flag_builds_a_checkpointed_model():
    from tfglow.family import get_family
    from tfglow.training.hparams import build_parser, resolve

    hps = resolve(build_parser().parse_args(["--model", "hierarchical", "--problem", "digits",
                                             "--gradient_checkpointing", "1"]))
    # as the trainer builds its model
    model = get_family(hps.model).build(hps.model_config(),
                                        gradient_checkpointing=hps.gradient_checkpointing,
                                        precision=hps.precision)
    assert model.gradient_checkpointing and all(lv.checkpoint for lv in model.levels)
    assert model.end.rest_flow.checkpoint
