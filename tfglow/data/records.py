"""The on-disk record format of the original Glow release, written and read by tfglow.

Every record is a `tf.train.Example` with
  - `shape`: int64 list [H, W, C],
  - `data`:  bytes, the raw uint8 image in HWC order (H*W*C bytes),
  - `label`: int64 list [1] (0 when the data set has no classes),
  - `attr`:  int64 list [40] (CelebA only; +1 / -1 as in the CelebA attribute file).

Shards are named `<split>-rXX-s-SSSS-of-NNNN.tfrecords` inside `<data_dir>/<split>/`, with
XX = floor(log2(stored image size)), e.g. r05 for 32x32 and r06 for LSUN's 96-pixel images
(the original globs r06 for 64x64 random crops of them).
"""
import hashlib
import re

import numpy as np

from tfglow.data.errors import DataError

SPLITS = ("train", "validation")
N_CELEBA_ATTR = 40

_SHARD_RE = re.compile(
    r"^(?P<split>[A-Za-z0-9_]+)-r(?P<lg>\d{2})-s-(?P<index>\d{4,})-of-(?P<count>\d{4,})\.tfrecords$")


def resolution_tag(size):
    """floor(log2(size)): the XX of `-rXX-` in shard names."""
    if int(size) < 1:
        raise DataError(None, f"image size must be positive, got {size}")
    return int(size).bit_length() - 1


def is_power_of_two(n):
    return int(n) >= 1 and (int(n) & (int(n) - 1)) == 0


def shard_name(split, tag, index, count):
    """File name of shard `index` of `count` for `split` at resolution tag `tag` (= log2 size)."""
    return "%s-r%02d-s-%04d-of-%04d.tfrecords" % (split, tag, index, count)


def parse_shard_name(name):
    """Returns dict(split, tag, index, count) for a shard file name, or None if it is not one."""
    m = _SHARD_RE.match(name)
    if not m:
        return None
    return {"split": m["split"], "tag": int(m["lg"]), "index": int(m["index"]),
            "count": int(m["count"])}


def serialize_example(image, label=0, attr=None):
    """uint8 image [H, W, C] -> serialized tf.train.Example bytes (the original's features)."""
    import tensorflow as tf

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise DataError(None, f"expected a uint8 [H, W, C] image, got {image.dtype} {image.shape}")

    def int64s(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    feature = {
        "shape": int64s(image.shape),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "label": int64s([label]),
    }
    if attr is not None:
        feature["attr"] = int64s(np.asarray(attr).reshape(-1))
    # deterministic: map fields in sorted key order, so reruns and resumes give identical bytes
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def parse_example_numpy(serialized, path="<record>"):
    """Serialized Example -> (uint8 image [H, W, C], label int, attr int64 [n] or None).

    Pure-Python parsing, used to peek at a first record and by `verify`; names `path` on errors.
    """
    import tensorflow as tf

    try:
        ex = tf.train.Example.FromString(serialized)
        feats = ex.features.feature
        shape = list(feats["shape"].int64_list.value)
        data = feats["data"].bytes_list.value[0]
        labels = list(feats["label"].int64_list.value)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types
        raise DataError(path, f"not a Glow image record ({type(e).__name__}: {e})") from None
    if len(shape) != 3 or len(labels) != 1:
        raise DataError(path, f"record has shape {shape} and label {labels}; "
                              "expected shape [H, W, C] and one label")
    if len(data) != int(np.prod(shape)):
        raise DataError(path, f"record data has {len(data)} bytes but shape {shape} needs "
                              f"{int(np.prod(shape))}")
    attr = None
    if "attr" in feats and len(feats["attr"].int64_list.value):
        attr = np.asarray(feats["attr"].int64_list.value, np.int64)
    image = np.frombuffer(data, np.uint8).reshape(shape)
    return image, int(labels[0]), attr


def sha256_file(path, chunk=1 << 22):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)
