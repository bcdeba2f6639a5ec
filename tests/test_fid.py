"""Frechet distance: zero for identical sets, the closed form on known Gaussians, symmetry,
singular covariances, the Keras feature extractors, the missing-weights error."""
import keras
import numpy as np
import pytest
import scipy.linalg

from tfglow.fid import (InceptionV3Features, KerasFeatures, fid, fid_from_features,
                        frechet_distance, gaussian_fit, sqrtm_psd, trace_sqrt_product)


def _spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_identical_feature_sets_give_zero(rng):
    f = rng.normal(size=(50, 8)) * rng.uniform(0.1, 3.0, size=8)
    assert abs(fid_from_features(f, f.copy())) < 1e-6


def test_known_gaussians_closed_form(rng):
    # diagonal covariances: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    sa, sb = rng.uniform(0.5, 2.0, size=5), rng.uniform(0.5, 2.0, size=5)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((sa - sb) ** 2)
    got = frechet_distance(mu_a, np.diag(sa ** 2), mu_b, np.diag(sb ** 2))
    assert got == pytest.approx(expected, rel=1e-10)
    # full covariances that do not commute: against scipy's general matrix square root
    ca, cb = _spd(rng, 6), _spd(rng, 6)
    ref = (np.trace(ca) + np.trace(cb)
           - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb)).real)
    assert frechet_distance(np.zeros(6), ca, np.zeros(6), cb) == pytest.approx(ref, rel=1e-8)


def test_symmetric(rng):
    ca, cb = _spd(rng, 7), _spd(rng, 7, rank=3)
    ma, mb = rng.normal(size=7), rng.normal(size=7)
    # cb's 4 zero eigenvalues come out as round-off ~1e-16 |M|, whose square roots add ~1e-8
    # each (BLAS-dependent): symmetric to sqrt(eps), not to eps.
    assert frechet_distance(ma, ca, mb, cb) == pytest.approx(frechet_distance(mb, cb, ma, ca),
                                                             abs=1e-6)


def test_stable_sqrt_on_singular_covariance(rng):
    # 4 samples of 10 features: rank-3 covariance
    feats = rng.normal(size=(4, 10))
    _, c = gaussian_fit(feats)
    assert np.linalg.matrix_rank(c) == 3
    root = sqrtm_psd(c)
    np.testing.assert_allclose(root @ root, c, atol=1e-12)
    np.testing.assert_allclose(root, root.T, atol=1e-14)
    other = _spd(rng, 10)
    # tr((C S)^(1/2)) from the (non-symmetric) eigendecomposition of C S
    eig = np.linalg.eigvals(c @ other)
    expected = np.sum(np.sqrt(np.clip(eig.real, 0, None)))
    assert trace_sqrt_product(c, other) == pytest.approx(expected, rel=1e-8)
    assert np.isfinite(fid_from_features(feats, rng.normal(size=(4, 10))))


def test_keras_model_extractor(rng):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(6)])
    ext = KerasFeatures(model, preprocess=lambda x: x / 255.0, batch_size=7)
    a = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    assert ext(a).shape == (20, 6)
    assert abs(fid(a, a, ext)) < 1e-6
    b = np.clip(a.astype(int) + 60, 0, 255).astype(np.uint8)
    assert fid(a, b, ext) > 1e-3
    with pytest.raises(TypeError, match="images must be uint8"):
        ext(a.astype(np.float32))


def test_inception_without_weights_file_says_how_to_supply_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="--fid_weights") as err:
        InceptionV3Features(tmp_path / "missing.h5")
    assert "missing.h5" in str(err.value) and "\n" not in str(err.value)


def test_bad_shapes_name_the_argument(rng):
    with pytest.raises(ValueError, match="features must have shape"):
        gaussian_fit(rng.normal(size=(1, 4)))
    with pytest.raises(ValueError, match="cov_b must have shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
