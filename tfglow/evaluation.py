"""Test bits/dim of a trained model over a whole split (Glow Table 2, eq. 2; Flow++ Table 1),
reproducibly, for any model family (tfglow.family).

The original's bits_x dequantises with fresh uniform noise u ~ U(0, 1/n_bins) on every call,
so repeated evaluations differ slightly. Here the noise of each image is a pure function of
(seed, the image's pixels):

    key(x)   = sum_i x_i * w_i  mod (2**31 - 1)       w_i = (1103515245 i + 12345) mod 2**31
    u(x)     = stateless_uniform([H, W, C], seed=[seed, key(x)]) / n_bins
               (the model's draw_noise with that seed: Flow++'s eps ~ N(0, I) of its
               variational dequantizer)

so an image's bits/dim does not depend on its batch, its position in the batch or the
order of the split, and

    bits/dim of a split = (1/N) sum_n bits_x(x_n)          (all N images, none dropped)

which is exactly the mean of per-image values computed one by one. The SavedModel's
`bits_per_dim` signature (tfglow.export) uses the same noise.

Importance-weighted bits/dim (Flow++ section 4; flow_training.py:376-394), with S noise
samples per image, sample s keyed by fold_in([seed, key(x)], s) and sample 0 the noise above:

    r_s = log p(x + u_s) - log q(u_s | x)       (nats; Glow: q uniform on the bin, log q = 0)
    iw  = -(m + log mean_s exp(r_s - m)) / (D ln 2),  m = max_s r_s, in float64

so S = 1 is the one-sample figure, and S -> infinity tightens it towards -log2 P(x) / D.
"""
import weakref

import numpy as np
import tensorflow as tf

from tfglow.grappler import with_model_setting

_PRIME = 2 ** 31 - 1



def image_keys(images):
    """uint8 [B, H, W, C] -> int64 [B] in [0, 2**31 - 1): a fixed hash of each image's pixels."""
    images = tf.convert_to_tensor(images)
    flat = tf.reshape(tf.cast(images, tf.int64), [tf.shape(images)[0], -1])
    i = tf.range(tf.shape(flat)[1], dtype=tf.int64)
    weights = (i * 1103515245 + 12345) % (2 ** 31)
    # 255 * 2**31 * D < 2**63 for D < 2**24 sub-pixels (e.g. 2048 x 2048 x 3): no overflow.
    return tf.reduce_sum(flat * weights[None], axis=1) % _PRIME


def _uniform(shape, seed):
    return tf.random.stateless_uniform(shape, seed)


def dequantization_noise(images, seed=0, draw=None, sample=0):
    """uint8 [B, H, W, C] -> float32 [B, H, W, C]: each image's noise, draw(shape, seed [2])
    (default uniform in [0, 1), in bins; a model's draw_noise). sample s > 0 (an int or a
    scalar tensor) folds s into each image's seed: the importance samples."""
    images = tf.convert_to_tensor(images)
    keys = image_keys(images)
    seed = tf.cast(seed, tf.int64)
    shape = tf.shape(images)[1:]
    draw = draw or _uniform
    sample = tf.convert_to_tensor(sample, tf.int32)

    def one(k):
        pair = tf.stack([seed, k])
        folded = tf.cast(tf.random.experimental.stateless_fold_in(pair, sample), tf.int64)
        return draw(shape, tf.where(sample > 0, folded, pair))

    return tf.map_fn(one, keys, fn_output_signature=tf.float32)


def batch_seed(images, seed=0, sample=0):
    """int32 [2]: the seed of a batch's other noise (the hierarchical model's encoder noise),
    fold_in([seed, sum of image keys mod 2**31 - 1], sample): fixed by the batch's images."""
    key = tf.reduce_sum(image_keys(images)) % _PRIME
    pair = tf.stack([tf.cast(seed, tf.int64), key])
    return tf.random.experimental.stateless_fold_in(pair, tf.convert_to_tensor(sample, tf.int32))


def per_image_terms(model, images, labels=None, seed=0, sample=0):
    """Dict of [B] float32 tensors (the model's loss_terms: Glow's bits_x, bits_y,
    pred_error, loss) with the fixed noise (of importance sample `sample`).

    images: uint8 [B, H, W, C]; labels: int [B], used only by class-conditional models.
    The hierarchical model's encoder noise is drawn from batch_seed and scaled by a statistic
    of the batch (its eq. 11, as hflow), so its values depend on the batch as well.
    """
    images = tf.convert_to_tensor(images)
    y = labels if model.conditional else None
    noise = dequantization_noise(images, seed, model.draw_noise, sample)
    return model.loss_terms(images, y, noise=noise, seed=batch_seed(images, seed, sample))


def per_image_bits(model, images, labels=None, seed=0):
    """uint8 [B, H, W, C] -> float32 [B] bits/dim (the original's bits_x, fixed noise)."""
    return per_image_terms(model, images, labels, seed)["bits_x"]


def log_ratios(model, images, labels=None, seed=0, sample=0):
    """[B] float64 log p(x + u) - log q(u | x) in nats of importance sample `sample`."""
    terms = per_image_terms(model, images, labels, seed, sample)
    if "log_ratio" in terms:
        return tf.cast(terms["log_ratio"], tf.float64)
    # Uniform dequantisation (Glow): bits_x = -(log p(x~) - D log n_bins) / (D ln 2).
    return -tf.cast(terms["bits_x"], tf.float64) * (model.config.n_dims * np.log(2.0))


def importance_weighted_bits(model, images, n_samples, labels=None, seed=0):
    """[B] float64 importance-weighted bits/dim with n_samples (int or scalar tensor) noise
    samples per image (module docstring); n_samples = 1 equals per_image_bits."""
    images = tf.convert_to_tensor(images)
    r = tf.map_fn(lambda s: log_ratios(model, images, labels, seed, s),
                  tf.range(tf.convert_to_tensor(n_samples, tf.int32)),
                  fn_output_signature=tf.float64)                        # [S, B]
    m = tf.reduce_max(r, axis=0)
    log_mean = m + tf.math.log(tf.reduce_mean(tf.exp(r - m), axis=0))
    return -log_mean / (model.config.n_dims * np.log(2.0))


def inversion_error(model, images, labels=None):
    """max |x - decode(encode(x))| over the bin centres x of uint8 images (the flow's input
    space: Glow [-0.5, 0.5), Flow++ pixel values), as the official Flow++ evaluation reports."""
    x = model.bin_centres(tf.convert_to_tensor(images))
    y = labels if model.conditional else None
    return float(tf.reduce_max(tf.abs(model.decode(model.encode(x, y), y) - x)))


_COMPILED = weakref.WeakKeyDictionary()


def compiled_terms(model, seed=0):
    """A tf.function (images uint8 [B, H, W, C], labels int32 [B]) -> per_image_terms dict,
    traced once for any B (and cached per model and seed); called without Grappler for a
    model with graph_optimizer False (tfglow.grappler.with_model_setting)."""
    cache = _COMPILED.setdefault(model, {})
    if seed not in cache:
        cache[seed] = with_model_setting(model, _trace_terms(model, seed))
    return cache[seed]


def _specs(model):
    return [tf.TensorSpec([None, *model.config.image_shape], tf.uint8),
            tf.TensorSpec([None], tf.int32)]


def _trace_terms(model, seed):
    @tf.function(input_signature=_specs(model), reduce_retracing=True)
    def terms(images, labels):
        return per_image_terms(model, images, labels, seed)

    return terms


def compiled_importance_weighted(model, seed=0):
    """A tf.function (images, labels, n_samples int32 scalar) -> importance_weighted_bits,
    cached per model and seed; Grappler as compiled_terms."""
    cache = _COMPILED.setdefault(model, {})
    key = ("iw", seed)
    if key not in cache:
        cache[key] = with_model_setting(model, tf.function(
            lambda images, labels, n: importance_weighted_bits(model, images, n, labels, seed),
            input_signature=[*_specs(model), tf.TensorSpec([], tf.int32)],
            reduce_retracing=True))
    return cache[key]


def evaluate_batches(model, batches, seed=0, max_images=-1, progress=None,
                     importance_samples=0):
    """Mean of each of the model's logged loss terms (model.stats) over (images, labels[,
    ...]) batches; exact, float64 sums.

    Returns {"bits_per_dim", "n_images", and model.stats: Glow "bits_x", "bits_y", "loss",
    "pred_error" (only for a model with labels: without a classifier the original logged
    1.0)}, and with importance_samples = S > 0 "importance_weighted_bits_per_dim" and
    "importance_samples" (module docstring). max_images >= 0 stops after that many images
    (the last batch is cut, not dropped).
    """
    terms = compiled_terms(model, seed)
    iw = compiled_importance_weighted(model, seed) if importance_samples > 0 else None
    names = tuple(model.stats)
    sums = dict.fromkeys(names + ("iw",), 0.0)
    n, previous = 0, None
    for batch in batches:
        images, labels = batch[0], batch[1]
        if max_images >= 0:
            if n >= max_images:
                break
            images, labels = images[:max_images - n], labels[:max_images - n]
        images, labels = tf.convert_to_tensor(images, tf.uint8), tf.cast(labels, tf.int32)
        b = int(images.shape[0])
        run_images, run_labels = images, labels
        if b < model.min_batch:
            # A batch statistic needs company: evaluate behind the previous batch, keep the tail.
            if previous is None:
                raise ValueError(f"evaluate: the {model.name} model's bound is a minibatch "
                                 f"statistic; it needs >= {model.min_batch} images, got {b}")
            run_images = tf.concat([previous[0], images], 0)
            run_labels = tf.concat([previous[1], labels], 0)
        out = terms(run_images, run_labels)
        for k in names:
            sums[k] += float(np.sum(out[k].numpy()[-b:].astype(np.float64)))
        if iw is not None:
            r = iw(run_images, run_labels, tf.constant(importance_samples)).numpy()
            sums["iw"] += float(np.sum(r[-b:]))
        previous = (images, labels) if b >= model.min_batch else previous
        n += b
        if progress is not None:
            progress(n, sums["bits_x"] / n)
    if n == 0:
        raise ValueError("evaluate: the split holds no images")
    result = {k: sums[k] / n for k in names}
    result["bits_per_dim"] = result["bits_x"]
    result["n_images"] = n
    if iw is not None:
        result["importance_weighted_bits_per_dim"] = sums["iw"] / n
        result["importance_samples"] = int(importance_samples)
    return result


def evaluate_split(model, data_dir, split="validation", batch_size=50, seed=0, max_images=-1,
                   progress=None, rnd_crop=False, importance_samples=0):
    """Test bits/dim of `model` over a whole split of a data directory (every image once).

    data_dir: as tfglow.data.make_dataset ("digits" for the embedded set). Images are read
    in file order without shuffling or augmentation (rnd_crop: LSUN RealNVP's crops of larger
    records, seeded by `seed`); see `evaluate_batches` for the result.
    """
    from tfglow.data import make_dataset

    ds = make_dataset(data_dir, split, model.config.image_size, batch_size, shuffle=False,
                      repeat=False, drop_remainder=False, dal=0, rnd_crop=rnd_crop, seed=seed)
    return evaluate_batches(model, ds, seed=seed, max_images=max_images, progress=progress,
                            importance_samples=importance_samples)
