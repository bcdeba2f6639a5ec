"""bits/dim and the dequantised objective against hand computations; the TFP distribution."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from conftest import perturb
from tfglow import objective


def identity_config(**changes):
    # Reverse permutation, additive coupling, no init: every flow is a permutation of the
    # entries and every prior is N(0, I), so log p(x) = sum log N(x; 0, 1).
    return tfglow.GlowConfig(**{**dict(image_size=8, n_levels=2, depth=2, width=8,
                                       flow_permutation=0, flow_coupling=0, learntop=True),
                                **changes})


@pytest.mark.parametrize("n_bits_x", [8, 5])
def test_bits_per_dim_equals_hand_computation_for_an_identity_model(n_bits_x, rng):
    cfg = identity_config(n_bits_x=n_bits_x)
    model = tfglow.Glow(cfg)
    x = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    noise = rng.uniform(size=x.shape).astype(np.float32)
    bpd = model.bits_per_dim(x, noise=noise).numpy()

    n_bins = 2.0 ** n_bits_x
    xt = np.floor(x / 2.0 ** (8 - n_bits_x)) / n_bins - 0.5 + noise / n_bins
    logp = (-0.5 * (np.log(2 * np.pi) + xt.astype(np.float64) ** 2)).sum(axis=(1, 2, 3))
    d = 8 * 8 * 3
    expected = (-logp + d * np.log(n_bins)) / (d * np.log(2.0))
    np.testing.assert_allclose(bpd, expected, rtol=1e-6)


def test_preprocess_and_postprocess_are_the_originals(rng):
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    for bits in (8, 5, 3):
        pre = objective.preprocess(x, bits).numpy()
        step = 2 ** (8 - bits)
        np.testing.assert_array_equal(pre, (x // step) / 2.0 ** bits - 0.5)
        assert pre.min() >= -0.5 and pre.max() < 0.5
        np.testing.assert_array_equal(objective.postprocess(pre, bits).numpy(), x // step * step)
        # Anywhere inside a bin maps back to that bin.
        inside = pre + (1 - 1e-3) / 2 ** bits
        np.testing.assert_array_equal(objective.postprocess(inside, bits).numpy(), x // step * step)


def test_distribution_log_prob_agrees_with_bits_per_dim(rng):
    cfg = tfglow.GlowConfig(image_size=8, n_levels=2, depth=2, width=16, flow_coupling=1,
                            learntop=True, n_bits_x=5, seed=1)
    model = tfglow.Glow(cfg)
    x = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    model.initialize(x)
    perturb(model, rng, 0.05)
    noise = rng.uniform(size=x.shape).astype(np.float32)
    xt = objective.dequantize(model.preprocess(x), cfg.n_bits_x, noise=noise)
    log_prob = model.distribution.log_prob(xt).numpy()
    d = cfg.n_dims
    from_tfp = -(log_prob - d * np.log(cfg.n_bins)) / (d * np.log(2.0))
    np.testing.assert_allclose(from_tfp, model.bits_per_dim(x, noise=noise).numpy(), rtol=1e-5)
    samples = model.distribution.sample(2, seed=3)
    assert samples.shape == (2,) + cfg.image_shape


def test_class_conditional_objective_and_distribution(rng):
    cfg = tfglow.GlowConfig(image_size=8, n_levels=2, depth=1, width=8, flow_coupling=0,
                            learntop=True, ycond=True, weight_y=0.5, n_y=4, seed=2)
    model = tfglow.Glow(cfg)
    x = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3])
    perturb(model, rng, 0.1)
    model.initialize(x)
    noise = rng.uniform(size=x.shape).astype(np.float32)
    terms = model.loss_terms(x, y, noise=noise)

    # bits_y by hand from the classifier's logits on the top z.
    xt = objective.dequantize(model.preprocess(x), cfg.n_bits_x, noise=noise)
    _, _, z_top = model.encode_with_logdet(xt, tf.constant(y, tf.int32))
    logits = model.classifier(z_top).numpy().astype(np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    bits_y = -log_softmax[np.arange(4), y] / np.log(2.0)
    np.testing.assert_allclose(terms["bits_y"].numpy(), bits_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["loss"].numpy(),
                               terms["bits_x"].numpy() + 0.5 * bits_y, rtol=1e-5)
    np.testing.assert_array_equal(terms["pred_error"].numpy(), (logits.argmax(1) != y) * 1.0)

    # The label moves the prior: the density depends on y, and TFP gets it as a kwarg.
    lp = model.distribution.log_prob(xt, bijector_kwargs={"labels": y}).numpy()
    np.testing.assert_allclose(lp, model.log_prob(xt, tf.constant(y, tf.int32)).numpy(), rtol=1e-5)
    other = model.log_prob(xt, tf.constant((y + 1) % 4, tf.int32)).numpy()
    assert np.all(np.abs(other - lp) > 1e-3)


def test_split_prior_is_the_originals_interleaved_gaussian(rng):
    split = tfglow.Split2d()
    split.build((2, 4, 4, 8))
    perturb(split, rng, 0.3)
    z = tf.constant(rng.normal(size=(2, 4, 4, 8)).astype(np.float32))
    z1, eps2, logdet = split.split(z)
    h = split.conv(z1).numpy().astype(np.float64)
    mean, logs = h[..., 0::2], h[..., 1::2]
    z2 = z[..., 4:].numpy().astype(np.float64)
    original = (-0.5 * (np.log(2 * np.pi) + 2 * logs + (z2 - mean) ** 2 / np.exp(2 * logs))).sum((1, 2, 3))
    ours = objective.standard_normal_logp(eps2).numpy() + logdet.numpy()
    np.testing.assert_allclose(ours, original, rtol=1e-5)


def test_top_prior_uses_halves_not_interleaving(rng):
    prior = tfglow.TopPrior(learntop=True)
    prior.build((2, 2, 2, 4))
    perturb(prior, rng, 0.3)
    p = prior.conv(tf.zeros([1, 2, 2, 8])).numpy()
    mean, logs = prior.mean_and_logs()
    np.testing.assert_array_equal(mean.numpy(), p[..., :4])
    np.testing.assert_array_equal(logs.numpy(), p[..., 4:])
