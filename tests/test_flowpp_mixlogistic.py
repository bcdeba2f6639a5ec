"""Mixture of logistics: against tfd.MixtureSameFamily(tfd.Logistic), stable in the tails, and
the coupling's inverse and output at extreme inputs."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from flowpp_helpers import perturb
from tfglow.actnorm import data_dependent_init
from tfglow.flowpp import mixlogistic
from tfglow.flowpp.coupling import MixLogisticCoupling

tfd = tfp.distributions
K = 5


def _params(rng, n, dtype=np.float64, spread=2.0):
    logits = rng.normal(size=(n, K)).astype(dtype)
    means = rng.normal(0.0, spread, size=(n, K)).astype(dtype)
    logscales = rng.uniform(-2.0, 1.0, size=(n, K)).astype(dtype)
    return logits, means, logscales


def _tfp(logits, means, logscales):
    return tfd.MixtureSameFamily(tfd.Categorical(logits=logits),
                                 tfd.Logistic(loc=means, scale=np.exp(logscales)))


def test_log_pdf_cdf_logit_match_tfp_where_tfp_is_accurate(rng):
    n = 400
    logits, means, logscales = _params(rng, n)
    x = rng.uniform(-8.0, 8.0, size=n)
    dist = _tfp(logits, means, logscales)
    cdf = dist.cdf(x).numpy()
    ok = (cdf > 1e-6) & (cdf < 1 - 1e-6)
    assert ok.sum() > n // 2
    np.testing.assert_allclose(mixlogistic.logpdf(x, logits, means, logscales).numpy(),
                               dist.log_prob(x).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mixlogistic.logcdf(x, logits, means, logscales).numpy(),
                               np.log(cdf), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mixlogistic.logsf(x, logits, means, logscales).numpy()[ok],
                               np.log1p(-cdf)[ok], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mixlogistic.logit_cdf(x, logits, means, logscales).numpy()[ok],
                               (np.log(cdf) - np.log1p(-cdf))[ok], rtol=1e-8, atol=1e-8)
    # the log-derivative of the logit: log f - log F - log(1 - F)
    logit, log_d = mixlogistic.logit_cdf_and_log_dlogit(x, logits, means, logscales)
    naive = dist.log_prob(x).numpy() - np.log(cdf) - np.log1p(-cdf)
    np.testing.assert_allclose(log_d.numpy()[ok], naive[ok], rtol=1e-8, atol=1e-8)


def test_float32_stays_finite_and_accurate_where_tfp_is_not(rng):
    n = 200
    logits, means, logscales = _params(rng, n, np.float32)
    x = np.concatenate([rng.uniform(40, 80, n // 2), rng.uniform(-80, -40, n // 2)])
    x = x.astype(np.float32)
    dist = _tfp(logits, means, logscales)
    cdf = dist.cdf(x).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        tfp_logit = np.log(cdf) - np.log1p(-cdf)
    assert not np.all(np.isfinite(tfp_logit))          # F rounds to 0 or 1 in float32
    logit, log_d = mixlogistic.logit_cdf_and_log_dlogit(x, logits, means, logscales)
    ref, ref_d = mixlogistic.logit_cdf_and_log_dlogit(
        x.astype(np.float64), *(p.astype(np.float64) for p in (logits, means, logscales)))
    assert np.all(np.isfinite(logit.numpy())) and np.all(np.isfinite(log_d.numpy()))
    np.testing.assert_allclose(logit.numpy(), ref.numpy(), rtol=1e-5)
    np.testing.assert_allclose(log_d.numpy(), ref_d.numpy(), rtol=1e-4, atol=1e-4)
    # one component: d logit F / dx = exp(-s) exactly, at any distance from the mean
    far = np.array([1e4, -1e4, 1e30, -1e30], np.float32)
    one = [np.zeros((4, 1), np.float32), np.zeros((4, 1), np.float32),
           np.full((4, 1), -3.0, np.float32)]
    _, d1 = mixlogistic.logit_cdf_and_log_dlogit(far, *one)
    np.testing.assert_allclose(d1.numpy(), 3.0, atol=1e-5)


@pytest.mark.parametrize("method", ["bisection", "chandrupatla"])
def test_inverse_of_logit_cdf_float64(method, rng):
    n = 300
    logits, means, logscales = _params(rng, n)
    x = rng.uniform(-30.0, 30.0, size=n)
    target = mixlogistic.logit_cdf(x, logits, means, logscales)
    tol = {"bisection": {}, "chandrupatla": {"position_tolerance": 1e-11}}[method]
    x2 = mixlogistic.INVERSES[method](target, logits, means, logscales, **tol)
    np.testing.assert_allclose(x2.numpy(), x, rtol=0, atol=1e-9)


def _coupling_with_trained_like_params(rng, inverse):
    layer = MixLogisticCoupling(filters=16, blocks=1, components=4, heads=2, inverse=inverse,
                                rng=rng)
    half = (4, 4, 2, 3)
    layer.build(half)
    x1 = tf.constant(rng.normal(size=half).astype(np.float32))
    perturb(layer, rng, 0.2)
    with data_dependent_init():                    # output scale 0.1, as after the official init
        layer.forward_pair(x1, x1)
    perturb(layer, rng, 0.02)
    return layer, x1


@pytest.mark.parametrize("inverse", ["bisection", "chandrupatla"])
def test_coupling_inverse_in_the_tails_float32(inverse, rng):
    """x_2 with F(x_2) = 1e-7 or 1 - 1e-7: inverse error <= 1e-5, nothing infinite."""
    layer, x1 = _coupling_with_trained_like_params(rng, inverse)
    a, b, *mix = layer.transform_params(x1)
    mix64 = [tf.cast(t, tf.float64) for t in mix]
    sign = np.where(rng.uniform(size=a.shape) < 0.5, -1.0, 1.0)
    target = sign * np.log((1 - 1e-7) / 1e-7)                  # logit of 1e-7 or 1 - 1e-7
    x2 = mixlogistic.invert_bisection(tf.constant(target), *mix64)
    x2 = tf.cast(x2, tf.float32)
    f = tf.exp(mixlogistic.logcdf(tf.cast(x2, tf.float64), *mix64)).numpy()
    assert np.all(np.minimum(f, 1 - f) < 1e-6)
    (_, y2), fldj = layer.forward_pair(x1, x2)
    (_, x2_back), ildj = layer.inverse_pair(x1, y2)
    for t in (y2, fldj, x2_back, ildj):
        assert np.all(np.isfinite(t.numpy()))
    np.testing.assert_allclose(x2_back.numpy(), x2.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-5)


def test_coupling_output_is_finite_at_extreme_inputs(rng):
    layer, x1 = _coupling_with_trained_like_params(rng, "bisection")
    for value in (1e4, -1e4, 1e30, -1e30):
        x2 = tf.fill(x1.shape, np.float32(value))
        (_, y2), logdet = layer.forward_pair(x1, x2)
        assert np.all(np.isfinite(y2.numpy())) and np.all(np.isfinite(logdet.numpy()))
        assert np.all(np.sign(y2.numpy()) == np.sign(value))
    # log-scales far below the clamp at -7 and huge means: still finite
    mix = [tf.fill((8, 4), 0.0), tf.fill((8, 4), 1e3), tf.fill((8, 4), -100.0)]
    mix[2] = tf.maximum(mix[2], mixlogistic.MIN_LOGSCALE)
    x = tf.constant(np.linspace(-1e6, 1e6, 8).astype(np.float32))
    logit, log_d = mixlogistic.logit_cdf_and_log_dlogit(x, *mix)
    assert np.all(np.isfinite(logit.numpy())) and np.all(np.isfinite(log_d.numpy()))
    np.testing.assert_allclose(log_d.numpy(), 7.0, atol=1e-4)   # = -clamped log-scale
