"""Frechet Inception Distance (Heusel et al., 2017) over a pluggable feature extractor.

    FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

computed in float64 NumPy. tr((S_a S_b)^(1/2)) is taken as sum(sqrt(eig(A S_b A))) with
A = S_a^(1/2): A S_b A is symmetric positive semi-definite and has the eigenvalues of S_a S_b,
so a symmetric eigensolver suffices and singular covariances (fewer samples than features) are
handled without the complex parts and error terms of scipy.linalg.sqrtm. Negative eigenvalues
from round-off are clipped to 0.

Features: any callable uint8 images [N, H, W, C] -> [N, d]. `KerasFeatures` wraps any Keras
model (`extractor_from_file` loads a saved .keras one); `InceptionV3Features` is the usual pool3 extractor (2048-d), built with
keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg") and loaded from
a local weights file: nothing is downloaded.
"""
import os

import numpy as np
import tensorflow as tf

INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def sqrtm_psd(a):
    """Symmetric PSD square root of a [d, d] (float64), through its eigendecomposition."""
    a = np.asarray(a, np.float64)
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s_a, s_b):
    """tr((S_a S_b)^(1/2)) for symmetric PSD S_a, S_b [d, d] (see the module docstring)."""
    root = sqrtm_psd(s_a)
    m = root @ np.asarray(s_b, np.float64) @ root
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None))))


def gaussian_fit(features):
    """features [N, d] (N >= 2) -> (mean [d], unbiased covariance [d, d]) in float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, d]; got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu_a, cov_a, mu_b, cov_b):
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (float, >= 0 up to round-off)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    d = mu_a.shape[0]
    for name, v in (("mu_b", mu_b), ("cov_a", cov_a), ("cov_b", cov_b)):
        want = (d,) if name == "mu_b" else (d, d)
        if v.shape != want:
            raise ValueError(f"{name} must have shape {want} (mu_a has {d} features); got "
                             f"{v.shape}")
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b)
                 - 2.0 * trace_sqrt_product(cov_a, cov_b))


def fid_from_features(features_a, features_b):
    return frechet_distance(*gaussian_fit(features_a), *gaussian_fit(features_b))


class KerasFeatures:
    """Any Keras model as a feature extractor: uint8 [N, H, W, C] -> [N, d] float64.

    preprocess maps the float32 images (0..255) to the model's input (identity by default);
    size resizes (bilinear) to size x size first; outputs are flattened per image."""

    def __init__(self, model, preprocess=None, size=None, batch_size=64):
        self.model, self.preprocess = model, preprocess
        self.size, self.batch_size = size, int(batch_size)

    def __call__(self, images):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise TypeError(f"images must be uint8 [N, H, W, C]; got {images.dtype} "
                            f"{images.shape}")
        out = []
        for start in range(0, len(images), self.batch_size):
            x = tf.cast(images[start:start + self.batch_size], tf.float32)
            if x.shape[-1] == 1 and self._input_channels() == 3:
                x = tf.tile(x, [1, 1, 1, 3])  # grey images into an RGB network
            if self.size is not None:
                x = tf.image.resize(x, (self.size, self.size), method="bilinear")
            if self.preprocess is not None:
                x = self.preprocess(x)
            f = self.model(x, training=False)
            out.append(np.reshape(np.asarray(f, np.float64), (int(x.shape[0]), -1)))
        return np.concatenate(out, 0)


    def _input_channels(self):
        shape = getattr(self.model, "input_shape", None)
        return shape[-1] if isinstance(shape, tuple) and shape else None


def extractor_from_file(path, batch_size=64):
    """The extractor of `evaluate.py --fid_weights PATH`: a saved Keras model (.keras), its
    output the features, resized to its input size; else InceptionV3 weights (.h5)."""
    path = os.fspath(path) if path else ""
    if not path.endswith(".keras"):
        return InceptionV3Features(path, batch_size)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--fid_weights {path}: no such Keras model file")
    import keras
    model = keras.models.load_model(path, compile=False)
    size = model.input_shape[1] if len(model.input_shape) == 4 else None
    return KerasFeatures(model, size=size, batch_size=batch_size)


def InceptionV3Features(weights_path, batch_size=64):
    """The pool3 (2048-d) InceptionV3 extractor with weights from a local file."""
    weights_path = os.fspath(weights_path) if weights_path is not None else None
    if not weights_path or not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"InceptionV3 weights not found at {weights_path!r}: download {INCEPTION_WEIGHTS} "
            "(keras-applications releases) on a machine with network access and pass its path "
            "(--fid_weights PATH)")
    import keras
    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                           input_shape=(299, 299, 3))
    model.load_weights(weights_path)
    return KerasFeatures(model, keras.applications.inception_v3.preprocess_input, size=299,
                         batch_size=batch_size)


def fid(images_a, images_b, extractor):
    """FID between two uint8 image sets [N, H, W, C] under `extractor` (callable -> [N, d])."""
    return fid_from_features(extractor(images_a), extractor(images_b))
