"""`make_dataset`: the training / evaluation input pipeline over Glow TFRecords.

Pipeline (records): file list -> per-worker file shard -> file shuffle -> parallel interleave of
TFRecord readers -> [record shard when there are fewer files than workers] -> shuffle buffer ->
repeat -> parse (+ random crop) with AUTOTUNE maps -> batch -> dal augmentation -> prefetch.
The embedded `digits` set runs through the very same steps from in-memory records.
"""
import numpy as np
import tensorflow as tf

from tfglow.data.digits import DIGITS_VAL_COUNT  # last 297 of the 1,797 digits: validation
from tfglow.data.augment import augment_batch
from tfglow.data.errors import DataError
from tfglow.data.imageops import box_downsample
from tfglow.data.manifest import ShardSet, find_shards, verify_dataset
from tfglow.data.records import is_power_of_two, serialize_example

DIGITS = "digits"
_SHUFFLE_BYTES = 64 << 20  # aim for a shuffle buffer of about 64 MB of images
_MAX_SHUFFLE = 10000


def _sub_seed(seed, index, k):
    """Deterministic, distinct seeds per (user seed, worker index, purpose)."""
    return int((int(seed) * 1000003 + int(index) * 7919 + k * 104729) % (2 ** 31 - 1))


def digits_records(split, resolution=8):
    """(ShardSet, serialized records) for the embedded digits set: 1 channel, labels 0..9;
    box-downsampled below 8x8, zero-padded (centred; 0 is the digits' background) above."""
    from tfglow.data.digits import load_digits_uint8

    if split not in ("train", "validation"):
        raise DataError(DIGITS, f"no split {split!r}; digits has 'train' and 'validation'")
    images, labels = load_digits_uint8()
    cut = len(images) - DIGITS_VAL_COUNT
    sel = slice(0, cut) if split == "train" else slice(cut, None)
    images, labels = images[sel], labels[sel]
    side = images.shape[1]
    if resolution > side:
        pad = (resolution - side) // 2
        images = np.pad(images, [(0, 0), (pad, resolution - side - pad),
                                 (pad, resolution - side - pad), (0, 0)])
    records = [serialize_example(box_downsample(x, resolution, DIGITS), int(y))
               for x, y in zip(images, labels)]
    info = ShardSet(DIGITS, split, (f"{DIGITS}:{split}",), (len(records),),
                    (resolution, resolution, 1), resolution, 1, 8, 10, 0, None)
    return info, records


def dataset_info(data_dir, split, resolution, rnd_crop=False):
    """ShardSet describing what make_dataset would read (counts, channels, n_bits_x, ...)."""
    if data_dir in (None, DIGITS):
        return digits_records(split, resolution)[0]
    return find_shards(str(data_dir), split, resolution, rnd_crop)


def _feature_spec(n_attr):
    spec = {"shape": tf.io.FixedLenFeature([3], tf.int64),
            "data": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([1], tf.int64)}
    if n_attr:
        spec["attr"] = tf.io.FixedLenFeature([n_attr], tf.int64)
    return spec


def _check(ok, problem, fname, *values):
    """A runtime check whose error names the shard file (tf.data errors otherwise do not)."""
    return tf.debugging.Assert(ok, ["tfglow.data DataError:", fname, problem, *values])


def _make_parser(info, resolution, rnd_crop, with_attr):
    """Builds record -> (image uint8 [res, res, C], label int32[, attr int32 [n]]) with checks
    that name the shard file when a record does not fit."""
    channels = info.channels
    spec = _feature_spec(info.n_attr if with_attr else 0)
    scale = 2 ** (8 - info.n_bits_x)
    num_classes = info.num_classes

    def parse(record, fname, rseed):
        feats = tf.io.parse_single_example(record, spec)
        shape = feats["shape"]
        data = tf.io.decode_raw(feats["data"], tf.uint8)
        label = tf.cast(tf.reshape(feats["label"], []), tf.int32)
        checks = [_check(tf.size(data, out_type=tf.int64) == tf.reduce_prod(shape),
                         "record data size does not match its shape", fname, shape)]
        if not rnd_crop:
            checks.append(_check(
                tf.reduce_all(shape == tf.constant([resolution, resolution, channels], tf.int64)),
                f"record shape is not [{resolution}, {resolution}, {channels}]", fname, shape))
        if num_classes:
            checks.append(_check((label >= 0) & (label < num_classes),
                                 f"label out of range 0..{num_classes - 1}", fname, label))
        with tf.control_dependencies(checks):
            image = tf.reshape(data, shape)
        if rnd_crop:
            image = tf.image.stateless_random_crop(
                image, [resolution, resolution, channels], seed=tf.stack([rseed, rseed // 3 + 1]))
        image = tf.ensure_shape(tf.reshape(image, [resolution, resolution, channels]),
                                [resolution, resolution, channels])
        if scale != 1:  # n-bit records hold floor(x / scale); hand the model x-scale uint8 values
            image = image * tf.constant(scale, tf.uint8)
        out = (image, label)
        if with_attr:
            out += (tf.cast(feats["attr"], tf.int32),)
        return out + (rseed,)

    return parse


def _make_batch_parser(info, resolution, with_attr):
    """Vectorised parse of a batch of fixed-shape records (much faster than per record):
    records [B] -> (images uint8 [B, res, res, C], labels int32 [B][, attr int32 [B, n]])."""
    channels = info.channels
    spec = _feature_spec(info.n_attr if with_attr else 0)
    scale = 2 ** (8 - info.n_bits_x)
    num_classes = info.num_classes
    want = tf.constant([resolution, resolution, channels], tf.int64)

    def parse(records, fnames, rseeds):
        feats = tf.io.parse_example(records, spec)
        labels = tf.cast(feats["label"][:, 0], tf.int32)
        size_ok = tf.strings.length(feats["data"]) == resolution * resolution * channels
        ok = tf.reduce_all(feats["shape"] == want, axis=1) & size_ok
        checks = [_check(tf.reduce_all(ok), "record data size does not match its shape, or the "
                         f"shape is not [{resolution}, {resolution}, {channels}]",
                         tf.boolean_mask(fnames, ~ok)[:1], tf.boolean_mask(feats["shape"], ~ok)[:1])]
        if num_classes:
            bad = (labels < 0) | (labels >= num_classes)
            checks.append(_check(~tf.reduce_any(bad), f"label out of range 0..{num_classes - 1}",
                                 tf.boolean_mask(fnames, bad)[:1], tf.boolean_mask(labels, bad)[:1]))
        with tf.control_dependencies(checks):
            data = tf.io.decode_raw(feats["data"], tf.uint8)
        images = tf.reshape(data, [-1, resolution, resolution, channels])
        images.set_shape([records.shape[0], resolution, resolution, channels])
        if scale != 1:  # n-bit records hold floor(x / scale); hand the model x-scale uint8 values
            images = images * tf.constant(scale, tf.uint8)
        out = (images, labels)
        if with_attr:
            out += (tf.cast(feats["attr"], tf.int32),)
        return out + (rseeds,)

    return parse


def _shuffle_buffer(info, resolution, batch_size):
    image_bytes = resolution * resolution * max(info.channels, 1)
    return int(min(_MAX_SHUFFLE, max(4 * batch_size, _SHUFFLE_BYTES // image_bytes)))


def make_dataset(data_dir, split, resolution, batch_size, *, shard=(1, 0), shuffle=True, seed=0,
                 rnd_crop=False, dal=0, repeat=True, with_attr=False, drop_remainder=None,
                 shuffle_buffer=None, cycle_length=4, verify=False):
    """Batches of (images uint8 [B, res, res, C], labels int32 [B][, attr int32 [B, 40]]).

    data_dir: a directory written by `python -m data_prep` (with dataset.json) or the original
        release's TFRecord directory (`<split>/<split>-rXX-s-SSSS-of-NNNN.tfrecords`, no
        manifest); None or "digits" serves scikit-learn's digits (8x8x1) with no preparation.
    split: "train" or "validation".  resolution: power of two (image side).
    shard: (num_shards, index) of this worker. Shard files are dealt out to workers when there
        are at least as many files as workers, else records are (every num_shards-th record of
        a fixed file order); either way the workers' data are disjoint and together complete.
    shuffle/seed: file-order and record shuffling (reshuffled every pass), reproducible by seed.
    rnd_crop: random res x res crops of larger stored images (LSUN RealNVP: 96 -> 64).
    dal: augmentation level 0/1/2 applied to batches (see tfglow.data.augment).
    repeat: loop forever (training; one epoch is then whatever n_train images the caller takes,
        e.g. `steps_per_epoch(n_train, batch_size)` batches from ONE iterator). Without repeat
        the set is read once and the last batch may be short (`drop_remainder` default: repeat).
    with_attr: also return the per-image attributes (CelebA: 40 values, +1 / -1).
    verify: first check every shard's sha256 and record count against dataset.json (reads all
        data, slow); without it only names and byte sizes are checked.

    5-bit records (manifest n_bits_x 5) store floor(x / 8); they are returned as stored * 8, so
    the model's floor(x / 2**(8 - n_bits_x)) recovers the stored value exactly.
    """
    if not is_power_of_two(resolution):
        raise DataError(data_dir, f"resolution {resolution} is not a power of two")
    num_shards, index = (int(v) for v in shard)
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"shard must be (num_shards >= 1, 0 <= index < num_shards), got {shard}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if dal not in (0, 1, 2):
        raise ValueError(f"dal must be 0, 1 or 2, got {dal}")
    if data_dir in (None, DIGITS):
        info, records = digits_records(split, resolution)
        files = tf.data.Dataset.from_tensors((tf.constant(records), info.paths[0]))
        reader = lambda recs, name: tf.data.Dataset.from_tensor_slices(recs).map(  # noqa: E731
            lambda r: (r, name))
    else:
        info = find_shards(str(data_dir), split, resolution, rnd_crop)
        if verify and info.manifest is not None:
            verify_dataset(str(data_dir), splits=[split], resolutions=[info.stored_size])
        files = tf.data.Dataset.from_tensor_slices(list(info.paths))
        files = files.map(lambda f: (f, f))
        reader = lambda path, name: tf.data.TFRecordDataset(path).map(  # noqa: E731
            lambda r: (r, name))
    if with_attr and not info.n_attr:
        raise DataError(info.data_dir, "with_attr=True but the records carry no 'attr' feature")

    n_files = len(info.paths)
    record_shard = n_files < num_shards
    if num_shards > 1 and not record_shard:
        files = files.shard(num_shards, index)
    if shuffle and not record_shard:
        files = files.shuffle(n_files, seed=_sub_seed(seed, index, 1), reshuffle_each_iteration=True)
    ds = files.interleave(reader, cycle_length=max(1, min(cycle_length, n_files)),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if record_shard and num_shards > 1:
        ds = ds.shard(num_shards, index)
    if shuffle:
        buf = shuffle_buffer or _shuffle_buffer(info, resolution, batch_size)
        ds = ds.shuffle(buf, seed=_sub_seed(seed, index, 2), reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # One random int64 per record, re-drawn on every pass, seeds crops and augmentation.
    rng = tf.data.Dataset.random(seed=_sub_seed(seed, index, 3), rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rng)).map(lambda rf, r: (rf[0], rf[1], r))
    batch = int(batch_size)
    drop = repeat if drop_remainder is None else drop_remainder
    if rnd_crop:  # shapes vary per record: parse and crop one by one, then batch
        ds = ds.map(_make_parser(info, resolution, rnd_crop, with_attr),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch, drop_remainder=drop)
        parse_batch = None
    else:
        ds = ds.batch(batch, drop_remainder=drop)
        parse_batch = _make_batch_parser(info, resolution, with_attr)

    def finish(*batch):
        if parse_batch is not None:
            batch = parse_batch(*batch)
        *out, rseeds = batch
        if dal:
            s = rseeds[0]
            out[0] = augment_batch(out[0], tf.stack([s % (2 ** 31), s // (2 ** 31)]), dal)
        return tuple(out)

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n_train, batch_size):
    """Batches in one of the original's `n_train`-image epochs (global batch size)."""
    return max(1, int(n_train) // int(batch_size))


def load_numpy(data_dir, split, resolution, *, with_attr=False, rnd_crop=False, seed=0):
    """Whole split as numpy (images uint8 [N, res, res, C], labels [N][, attr]) in file order;
    for tests, evaluation of small sets and tools."""
    ds = make_dataset(data_dir, split, resolution, 1024, shuffle=False, repeat=False,
                      with_attr=with_attr, rnd_crop=rnd_crop, seed=seed)
    parts = [tuple(t.numpy() for t in b) for b in ds]
    if not parts:
        raise DataError(data_dir, f"split {split!r} is empty")
    return tuple(np.concatenate(p) for p in zip(*parts))
