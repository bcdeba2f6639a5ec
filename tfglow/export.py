"""SavedModel export: a trained model (any family, tfglow.family) as serving signatures that
need only TensorFlow.

    export_saved_model(model, "exported/")            # Python; `evaluate.py --export DIR`
    m = tf.saved_model.load("exported/")               # any process with TensorFlow
    zs  = m.signatures["encode"](images=x_uint8)       # {"z0": [B, h0, w0, c0], ..., "z{L-1}"}
    img = m.signatures["decode"](**zs)["images"]       # uint8 [B, H, W, C], == x_uint8
    img = m.signatures["sample"](n=tf.constant(16), temperature=tf.constant(0.7))["images"]
    bpd = m.signatures["bits_per_dim"](images=x_uint8)["bits_per_dim"]     # float32 [B]

Models with an `importance_weighted_bits_per_dim` method (Flow++, hierarchical) also get that
signature: (images, samples int32 scalar) -> {"bits_per_dim": float64 [B]}, tfglow.evaluation's
importance_weighted_bits with seed 0 (Flow++: samples = 1 equals `bits_per_dim`; the
hierarchical model: its one-sample estimate has the ELBO's mean).

The hierarchical model's bound is a statistic of its batch: its `bits_per_dim` needs >= 2
images (model.min_batch) and `sample` draws the 1x1 latent at temperature 1, as the model.

Class-conditional (ycond) models take `y` (int32 [B], or [n] for `sample`) in every
signature. `encode` encodes the centre of each pixel's bin (tfglow.sampling), so decode
returns the images exactly. `bits_per_dim` is the original's dequantised bits_x with the
per-image noise of tfglow.evaluation (seed 0), so it equals `evaluation.per_image_bits`.
`sample` draws fresh noise on every call; `sample_seeded` (n, temperature, seed[, y]) is
reproducible and equals `model.sample(n, temperature, y, seed=seed)`.

The module holds only the model's variables and traced functions (no Keras or tfglow
objects), and a `config` JSON string (`m.config`), so loading needs no tfglow. Export
after loading the Polyak-averaged weights (`load_trained(path, use_polyak=True)`, the default)
to ship those.
"""
import json

import tensorflow as tf

from tfglow import evaluation
from tfglow.sampling import bin_centres

SIGNATURES = ("encode", "decode", "sample", "sample_seeded", "bits_per_dim")
#: The extra signature of models with a variational dequantizer (Flow++).
IW_SIGNATURE = "importance_weighted_bits_per_dim"


def signatures_of(model):
    """The signature names exported for `model`."""
    return SIGNATURES + ((IW_SIGNATURE,) if hasattr(model, IW_SIGNATURE) else ())


def _specs(model):
    cfg = model.config
    images = tf.TensorSpec([None, *cfg.image_shape], tf.uint8, name="images")
    latents = [tf.TensorSpec([None, *s], tf.float32, name=f"z{i}")
               for i, s in enumerate(model.latent_shapes)]
    y = tf.TensorSpec([None], tf.int32, name="y")
    return images, latents, y


def _checked(x, shape, name, batch=None):
    """x with a runtime check that its shape is [B, *shape] (the signatures' static shapes
    have a free batch axis, and a loaded signature does not check the others itself)."""
    want = ", ".join(map(str, shape))
    checks = [tf.debugging.assert_equal(
        tf.shape(x)[1:], tf.constant(shape, tf.int32),
        message=f"{name} must have shape [B, {want}]")]
    if batch is not None:
        checks.append(tf.debugging.assert_equal(
            tf.shape(x)[0], batch, message=f"{name} must have the batch size of the others"))
    with tf.control_dependencies(checks):
        return tf.identity(x)


def _latent_dict(zs):
    return {f"z{i}": z for i, z in enumerate(zs)}


def _sample_eps(model, n, temperature, seed=None):
    eps = []
    for i, shape in enumerate(model.latent_shapes):
        full = tf.concat([[n], tf.constant(shape, tf.int32)], 0)
        if seed is None:
            e = tf.random.normal(full)
        else:
            e = tf.random.stateless_normal(full, seed=tf.stack([tf.cast(seed, tf.int64),
                                                                tf.constant(i, tf.int64)]))
        unit = i in getattr(model, "unit_temperature_latents", ())
        eps.append(e if unit else e * temperature)
    return eps


def build_functions(model):
    """{name: tf.function with an input signature} for a model (see module docstring)."""
    images, latents, y_spec = _specs(model)
    scalar_n = tf.TensorSpec([], tf.int32, name="n")
    scalar_t = tf.TensorSpec([], tf.float32, name="temperature")
    scalar_seed = tf.TensorSpec([], tf.int32, name="seed")
    scalar_samples = tf.TensorSpec([], tf.int32, name="samples")
    ycond = model.conditional
    image_shape = list(model.config.image_shape)

    def check_images(x, y, min_batch=1):
        x = _checked(x, image_shape, "images")
        if min_batch > 1:
            with tf.control_dependencies([tf.debugging.assert_greater_equal(
                    tf.shape(x)[0], min_batch, message=f"images: the {model.name} model's "
                    f"bound is a batch statistic; give >= {min_batch} images")]):
                x = tf.identity(x)
        return x, None if y is None else _checked(y, [], "y", tf.shape(x)[0])

    def encode(x, y=None):
        x, y = check_images(x, y)
        return _latent_dict(model.encode(bin_centres(model, x), y))

    def decode(zs, y=None):
        batch = tf.shape(zs[0])[0]
        zs = [_checked(z, list(s), f"z{i}", batch)
              for i, (z, s) in enumerate(zip(zs, model.latent_shapes))]
        y = None if y is None else _checked(y, [], "y", batch)
        return {"images": model.postprocess(model.decode(zs, y))}

    def sample(n, temperature, y=None, seed=None):
        checks = [tf.debugging.assert_positive(n, message="sample: n must be >= 1")]
        if y is not None:
            checks.append(tf.debugging.assert_equal(
                tf.shape(y)[0], n, message="sample: y must hold n labels"))
        with tf.control_dependencies(checks):
            n = tf.identity(n)
        eps = _sample_eps(model, n, temperature, seed)
        return {"images": model.postprocess(model.decode(eps, y))}

    def bits(x, y=None):
        x, y = check_images(x, y, model.min_batch)
        return {"bits_per_dim": evaluation.per_image_bits(model, x, y, seed=0)}

    def iw_bits(x, samples, y=None):
        x, y = check_images(x, y, model.min_batch)
        with tf.control_dependencies([tf.debugging.assert_positive(
                samples, message="importance_weighted_bits_per_dim: samples must be >= 1")]):
            samples = tf.identity(samples)
        return {"bits_per_dim": evaluation.importance_weighted_bits(model, x, samples, y, seed=0)}

    if ycond:
        fns = {
            "encode": tf.function(lambda images, y: encode(images, y),
                                  input_signature=[images, y_spec]),
            "decode": tf.function(lambda *a: decode(a[:-1], a[-1]),
                                  input_signature=[*latents, y_spec]),
            "sample": tf.function(lambda n, temperature, y: sample(n, temperature, y),
                                  input_signature=[scalar_n, scalar_t, y_spec]),
            "sample_seeded": tf.function(
                lambda n, temperature, seed, y: sample(n, temperature, y, seed),
                input_signature=[scalar_n, scalar_t, scalar_seed, y_spec]),
            "bits_per_dim": tf.function(lambda images, y: bits(images, y),
                                        input_signature=[images, y_spec]),
            IW_SIGNATURE: tf.function(lambda images, samples, y: iw_bits(images, samples, y),
                                      input_signature=[images, scalar_samples, y_spec]),
        }
    else:
        fns = {
            "encode": tf.function(lambda images: encode(images), input_signature=[images]),
            "decode": tf.function(lambda *zs: decode(zs), input_signature=latents),
            "sample": tf.function(lambda n, temperature: sample(n, temperature),
                                  input_signature=[scalar_n, scalar_t]),
            "sample_seeded": tf.function(
                lambda n, temperature, seed: sample(n, temperature, seed=seed),
                input_signature=[scalar_n, scalar_t, scalar_seed]),
            "bits_per_dim": tf.function(lambda images: bits(images), input_signature=[images]),
            IW_SIGNATURE: tf.function(lambda images, samples: iw_bits(images, samples),
                                      input_signature=[images, scalar_samples]),
        }
    return {name: fn for name, fn in fns.items() if name in signatures_of(model)}


class ModelExport(tf.Module):
    """What is saved: the model's variables, the signature functions and the config JSON."""

    def __init__(self, model, hparams=None):
        super().__init__(name="model_export")
        # The underlying tf.Variables only (not the Keras objects), so loading needs no Keras
        # classes; the traced functions capture exactly these.
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        self.config = tf.Variable(json.dumps(model.config.to_dict(), sort_keys=True),
                                  trainable=False, name="config")
        self.hparams = tf.Variable(json.dumps(hparams or {}, sort_keys=True, default=str),
                                   trainable=False, name="hparams")
        self.latent_shapes = tf.Variable(json.dumps([list(s) for s in model.latent_shapes]),
                                         trainable=False, name="latent_shapes")
        for name, fn in build_functions(model).items():
            setattr(self, name, fn)


GlowExport = ModelExport  # its name before other families


def export_saved_model(model, export_dir, hparams=None):
    """Writes `model` (its current weights) as a SavedModel with SIGNATURES to export_dir.

    Returns export_dir. The weights exported are whatever the model holds: load a run with
    tfglow.training.checkpoints.load_trained(path) (Polyak averages by default) first.
    """
    if not model.is_initialized:
        raise ValueError("export: the model is not initialised (run model.initialize(x) or "
                         "load trained weights first)")
    module = ModelExport(model, hparams)
    signatures = {name: getattr(module, name) for name in signatures_of(model)}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir
