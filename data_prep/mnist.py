"""MNIST from its four idx files (gzipped or not), padded to 32x32 and tiled to 3 channels as
the original (`np.pad(..., 'minimum')`, then the grey image repeated in R, G and B)."""
import gzip
import os

import numpy as np

from data_prep.source import DatasetSource, array_split, require_source, seeded_order
from tfglow.data.errors import DataError

FILES = {"train_images": "train-images", "train_labels": "train-labels",
         "test_images": "t10k-images", "test_labels": "t10k-labels"}


def _find(folder, stem, ndim):
    for sep in ("-", "."):
        for gz in ("", ".gz"):
            p = os.path.join(folder, f"{stem}{sep}idx{ndim}-ubyte{gz}")
            if os.path.isfile(p):
                return p
    raise DataError(folder, f"missing MNIST file {stem}-idx{ndim}-ubyte[.gz]")


def read_idx(path):
    """An idx file (optionally gzipped) -> numpy uint8 array of its declared shape."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(path, f"cannot read or gunzip ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(path, "not an idx file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(path, f"idx element type {raw[2]:#x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(path, "truncated idx header")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    need = int(np.prod(dims))
    if len(raw) - header != need:
        raise DataError(path, f"idx header declares {dims} ({need} bytes) but the file holds "
                              f"{len(raw) - header} bytes (truncated or corrupt)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load(folder, images_stem, labels_stem):
    ipath, lpath = _find(folder, images_stem, 3), _find(folder, labels_stem, 1)
    images, labels = read_idx(ipath), read_idx(lpath)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(ipath, f"expected N x 28 x 28 images and N labels, got {images.shape} "
                               f"and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(lpath, f"{len(labels)} labels for {len(images)} images in {ipath}")
    bad = np.nonzero(labels > 9)[0]
    if bad.size:
        raise DataError(lpath, f"label {labels[bad[0]]} of image {bad[0]} out of range 0..9")
    return pad_tile(images), labels.astype(np.int64), ipath


def pad_tile(images):
    """uint8 [N, 28, 28] -> [N, 32, 32, 3], as the original."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)), "minimum")
    return np.repeat(padded[..., None], 3, axis=3)


def open_source(opts):
    folder = require_source(opts, "a folder with the four MNIST idx files")
    if not os.path.isdir(folder):
        raise DataError(folder, "expected a folder holding the MNIST idx files")
    x_train, y_train, tr = _load(folder, FILES["train_images"], FILES["train_labels"])
    x_test, y_test, te = _load(folder, FILES["test_images"], FILES["test_labels"])
    return DatasetSource(
        "mnist", folder,
        {"train": array_split(x_train, y_train, tr, seeded_order(len(x_train), opts.seed)),
         "validation": array_split(x_test, y_test, te)},
        channels=3, num_classes=10, label_names=[str(i) for i in range(10)],
        image_shape=(32, 32, 3))
