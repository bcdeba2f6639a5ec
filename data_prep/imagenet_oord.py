"""Downsampled ImageNet (van den Oord et al.; image-net.org "small" / Imagenet32/64 sets).

Two layouts are recognised under --source:
  - npz batches: `train_data_batch_<k>.npz` (k = 1..10) and `val_data.npz`, each with `data`
    (N x 3*S*S uint8, planar R, G, B like CIFAR) and `labels` (1..1000; stored as label - 1);
  - png folders, the original's layout: `train_SxS/` and `valid_SxS/` (labels 0, as the
    original wrote them).
S (32 or 64) comes from the data; mixed sizes are an error.
"""
import glob
import os
import re
import zipfile

import numpy as np

from data_prep.images import make_loader
from data_prep.source import (DatasetSource, Example, SplitSource, indexed_split, list_images,
                              require_source, seeded_order)
from tfglow.data.errors import DataError

N_CLASSES = 1000


def _load_npz(path, keys):
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(path, f"npz batch lacks {missing} (has {z.files})")
            return [np.asarray(z[k]) for k in keys]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(path, f"corrupt or truncated npz batch ({type(e).__name__}: {e})") from None


def _npz_split(paths):
    """Streaming SplitSource over npz batches, read in file order, one file in memory at a time."""
    counts = []
    sizes = set()
    for p in paths:
        (labels,) = _load_npz(p, ["labels"])
        counts.append(len(np.asarray(labels).reshape(-1)))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cache = {}

    def batch(k):
        if k not in cache:
            cache.clear()
            data, labels = _load_npz(paths[k], ["data", "labels"])
            labels = np.asarray(labels, np.int64).reshape(-1)
            if data.dtype != np.uint8 or data.ndim != 2 or len(data) != len(labels):
                raise DataError(paths[k], f"'data' is {data.dtype} {data.shape}; expected uint8 "
                                          f"N x 3*S*S with N = {len(labels)} labels")
            side = int(round((data.shape[1] / 3) ** 0.5))
            if 3 * side * side != data.shape[1]:
                raise DataError(paths[k], f"rows of {data.shape[1]} values are not 3 x S x S")
            sizes.add(side)
            if len(sizes) > 1:
                raise DataError(paths[k], f"mixed image sizes across batches: {sorted(sizes)}")
            bad = np.nonzero((labels < 1) | (labels > N_CLASSES))[0]
            if bad.size:
                raise DataError(paths[k], f"label {labels[bad[0]]} of image {bad[0]} out of "
                                          f"range 1..{N_CLASSES}")
            cache[k] = (data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1), labels - 1)
        return cache[k]

    def read(start, stop):
        for i in range(start, stop):
            k = int(np.searchsorted(offsets, i, side="right") - 1)
            images, labels = batch(k)
            j = i - offsets[k]
            yield Example(images[j], int(labels[j]), None, f"{paths[k]}[{j}]")

    return SplitSource(int(offsets[-1]), read)


def _batch_number(path):
    m = re.search(r"(\d+)\.npz$", path)
    return int(m.group(1)) if m else 0


def open_source(opts):
    root = require_source(opts, "a folder of Imagenet32/64 npz batches or png folders")
    if os.path.isfile(root):
        raise DataError(root, "expected a folder (with *_data_batch_*.npz or train_SxS/)")
    train_npz = sorted(glob.glob(os.path.join(root, "**", "train_data_batch_*.npz"), recursive=True),
                       key=_batch_number)
    val_npz = sorted(glob.glob(os.path.join(root, "**", "val_data*.npz"), recursive=True))
    if train_npz:
        splits = {"train": _npz_split(train_npz)}
        if val_npz:
            splits["validation"] = _npz_split(val_npz)
        first = _npz_split(train_npz[:1])
        side = next(first.read(0, 1)).image.shape[0]
        return DatasetSource("imagenet_oord", root, splits, channels=3, num_classes=N_CLASSES,
                             image_shape=(side, side, 3), notes={"layout": "npz", "labels": "label - 1"})
    dirs = {d: os.path.join(root, d) for d in os.listdir(root)
            if os.path.isdir(os.path.join(root, d))}
    train_dirs = [d for d in dirs if re.fullmatch(r"train_\d+x\d+", d)]
    if len(train_dirs) != 1:
        raise DataError(root, "wrong layout: expected train_data_batch_*.npz files or one "
                              f"train_SxS/ folder (found {sorted(dirs) or 'nothing'})")
    size = train_dirs[0].split("_")[1]
    splits = {}
    for split, name in (("train", f"train_{size}"), ("validation", f"valid_{size}")):
        if name not in dirs:
            continue
        files = list_images(dirs[name])
        if not files:
            raise DataError(dirs[name], "no images found")
        order = seeded_order(len(files), opts.seed) if split == "train" else None
        splits[split] = indexed_split([(f, 0) for f in files], make_loader(dirs[name], opts), order)
    return DatasetSource("imagenet_oord", root, splits, channels=3, num_classes=1,
                         notes={"layout": "png folders"})
