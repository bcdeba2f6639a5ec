"""Test bits/dim of a trained model over a whole split (Glow Table 2, eq. 2), reproducibly.

The original's bits_x dequantises with fresh uniform noise u ~ U(0, 1/n_bins) on every call,
so repeated evaluations differ slightly. Here the noise of each image is a pure function of
(seed, the image's pixels):

    key(x)   = sum_i x_i * w_i  mod (2**31 - 1)       w_i = (1103515245 i + 12345) mod 2**31
    u(x)     = stateless_uniform([H, W, C], seed=[seed, key(x)]) / n_bins

so an image's bits/dim does not depend on its batch, its position in the batch or the
order of the split, and

    bits/dim of a split = (1/N) sum_n bits_x(x_n)          (all N images, none dropped)

which is exactly the mean of per-image values computed one by one. The SavedModel's
`bits_per_dim` signature (tfglow.export) uses the same noise.
"""
import weakref

import numpy as np
import tensorflow as tf

_PRIME = 2 ** 31 - 1

#: The loss_terms entries averaged over a split.
TERMS = ("bits_x", "bits_y", "pred_error", "loss")


def image_keys(images):
    """uint8 [B, H, W, C] -> int64 [B] in [0, 2**31 - 1): a fixed hash of each image's pixels."""
    images = tf.convert_to_tensor(images)
    flat = tf.reshape(tf.cast(images, tf.int64), [tf.shape(images)[0], -1])
    i = tf.range(tf.shape(flat)[1], dtype=tf.int64)
    weights = (i * 1103515245 + 12345) % (2 ** 31)
    # 255 * 2**31 * D < 2**63 for D < 2**24 sub-pixels (e.g. 2048 x 2048 x 3): no overflow.
    return tf.reduce_sum(flat * weights[None], axis=1) % _PRIME


def dequantization_noise(images, seed=0):
    """uint8 [B, H, W, C] -> float32 [B, H, W, C] in [0, 1): each image's noise, in bins."""
    images = tf.convert_to_tensor(images)
    keys = image_keys(images)
    seed = tf.cast(seed, tf.int64)
    shape = tf.shape(images)[1:]
    return tf.map_fn(lambda k: tf.random.stateless_uniform(shape, tf.stack([seed, k])),
                     keys, fn_output_signature=tf.float32)


def per_image_terms(model, images, labels=None, seed=0):
    """Dict of [B] float32 tensors (bits_x, bits_y, pred_error, loss) with the fixed noise.

    images: uint8 [B, H, W, C]; labels: int [B], used only by class-conditional models.
    """
    images = tf.convert_to_tensor(images)
    y = labels if model.config.ycond else None
    return model.loss_terms(images, y, noise=dequantization_noise(images, seed))


def per_image_bits(model, images, labels=None, seed=0):
    """uint8 [B, H, W, C] -> float32 [B] bits/dim (the original's bits_x, fixed noise)."""
    return per_image_terms(model, images, labels, seed)["bits_x"]


_COMPILED = weakref.WeakKeyDictionary()


def compiled_terms(model, seed=0):
    """A tf.function (images uint8 [B, H, W, C], labels int32 [B]) -> per_image_terms dict,
    traced once for any B (and cached per model and seed)."""
    cache = _COMPILED.setdefault(model, {})
    if seed not in cache:
        cache[seed] = _trace_terms(model, seed)
    return cache[seed]


def _trace_terms(model, seed):
    cfg = model.config
    spec = [tf.TensorSpec([None, *cfg.image_shape], tf.uint8), tf.TensorSpec([None], tf.int32)]

    @tf.function(input_signature=spec, reduce_retracing=True)
    def terms(images, labels):
        return per_image_terms(model, images, labels, seed)

    return terms


def evaluate_batches(model, batches, seed=0, max_images=-1, progress=None):
    """Mean of each loss term over (images, labels[, ...]) batches; exact, float64 sums.

    Returns {"bits_per_dim", "bits_x", "bits_y", "pred_error", "loss", "n_images"}, without
    pred_error for a model without labels (its classifier does not exist; the original logged
    1.0). max_images >= 0 stops after that many images (the last batch is cut, not dropped).
    """
    terms = compiled_terms(model, seed)
    sums = dict.fromkeys(TERMS, 0.0)
    n = 0
    for batch in batches:
        images, labels = batch[0], batch[1]
        if max_images >= 0:
            if n >= max_images:
                break
            images, labels = images[:max_images - n], labels[:max_images - n]
        out = terms(tf.convert_to_tensor(images, tf.uint8), tf.cast(labels, tf.int32))
        for k in TERMS:
            sums[k] += float(np.sum(out[k].numpy().astype(np.float64)))
        n += int(images.shape[0])
        if progress is not None:
            progress(n, sums["bits_x"] / n)
    if n == 0:
        raise ValueError("evaluate: the split holds no images")
    result = {k: sums[k] / n for k in TERMS if k != "pred_error" or model.config.ycond}
    result["bits_per_dim"] = result["bits_x"]
    result["n_images"] = n
    return result


def evaluate_split(model, data_dir, split="validation", batch_size=50, seed=0, max_images=-1,
                   progress=None, rnd_crop=False):
    """Test bits/dim of `model` over a whole split of a data directory (every image once).

    data_dir: as tfglow.data.make_dataset ("digits" for the embedded set). Images are read
    in file order without shuffling or augmentation (rnd_crop: LSUN RealNVP's crops of larger
    records, seeded by `seed`); see `evaluate_batches` for the result.
    """
    from tfglow.data import make_dataset

    ds = make_dataset(data_dir, split, model.config.image_size, batch_size, shuffle=False,
                      repeat=False, drop_remainder=False, dal=0, rnd_crop=rnd_crop, seed=seed)
    return evaluate_batches(model, ds, seed=seed, max_images=max_images, progress=progress)
