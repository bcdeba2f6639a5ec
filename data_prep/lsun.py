"""LSUN: a category's lmdb (keys -> webp / jpg bytes), as distributed by the LSUN project.

--source is one lmdb folder (holding data.mdb; the last --val_fraction of its keys become the
validation split) or a folder with `<category>_train_lmdb` and `<category>_val_lmdb`.
Preprocessing, as the original's lsun.py:
  - `--realnvp`: RealNVP protocol, no crop: `skimage.transform.pyramid_reduce` by
    min(H, W) / 96 so the short side becomes 96, scaled to 0..255 and truncated to uint8.
    Shapes vary (96 x long side) and are stored per record; train with random 64x64 crops
    (make_dataset(..., resolution=64, rnd_crop=True)), files tagged r06 as the original.
  - otherwise: centre crop to a square, then PIL antialiasing (Lanczos) resize to --resolution.
"""
import glob
import os

import numpy as np

from data_prep.source import (DatasetSource, Example, crop_resize, indexed_split, load_image,
                              require_source, split_counts)
from tfglow.data.errors import DataError

REALNVP_SIZE = 96
DEFAULT_VAL_FRACTION = 0.1


def realnvp_reduce(image, origin):
    """uint8 [H, W, 3] -> uint8 [~96, ~96 * W / H, 3] (short side 96), as the original."""
    import skimage.transform

    h, w = image.shape[:2]
    if min(h, w) < REALNVP_SIZE:
        raise DataError(origin, f"image is {h}x{w}, short side below {REALNVP_SIZE}")
    reduced = skimage.transform.pyramid_reduce(image, min(h, w) / REALNVP_SIZE, channel_axis=-1)
    return (reduced * 255.0).astype(np.uint8)


def _open_lmdb(path):
    import lmdb

    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise DataError(path, "not an lmdb folder (no data.mdb)")
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        with env.begin(write=False) as txn:
            keys = [k for k in txn.cursor().iternext(keys=True, values=False)]
    except lmdb.Error as e:
        raise DataError(path, f"cannot read lmdb ({e})") from None
    if not keys:
        raise DataError(path, "lmdb holds no images")
    return env, keys


def _loader(path, env, opts):
    def load(key):
        origin = f"{path}[key {key.decode(errors='replace')}]"
        with env.begin(write=False) as txn:
            value = txn.get(key)
        if value is None:
            raise DataError(origin, "key vanished from the lmdb")
        img = load_image(bytes(value), origin, 3)
        if opts.realnvp:
            return Example(realnvp_reduce(img, origin), 0, None, origin)
        return Example(crop_resize(img, opts.resolution, origin), 0, None, origin)
    return load


def open_source(opts):
    root = require_source(opts, "an LSUN lmdb folder")
    if not opts.realnvp and not opts.resolution:
        raise DataError(root, "give --realnvp (short side 96, random 64 crops) or --resolution")
    if os.path.isfile(os.path.join(root, "data.mdb")):
        env, keys = _open_lmdb(root)
        frac = DEFAULT_VAL_FRACTION if opts.val_fraction is None else opts.val_fraction
        n_train, n_val = split_counts(len(keys), frac, root)
        load = _loader(root, env, opts)
        splits = {"train": indexed_split(keys[:n_train], load)}
        if n_val:
            splits["validation"] = indexed_split(keys[n_train:], load)
    else:
        trains = sorted(glob.glob(os.path.join(root, "*_train_lmdb")))
        if len(trains) != 1:
            raise DataError(root, "wrong layout: expected an lmdb folder (data.mdb) or exactly one "
                                  f"<category>_train_lmdb inside (found {len(trains)})")
        splits = {}
        for split, path in (("train", trains[0]),
                            ("validation", trains[0][:-len("_train_lmdb")] + "_val_lmdb")):
            if split == "validation" and not os.path.isdir(path):
                continue
            env, keys = _open_lmdb(path)
            splits[split] = indexed_split(keys, _loader(path, env, opts))
    if opts.realnvp:
        return DatasetSource("lsun", root, splits, channels=3, num_classes=1,
                             image_shape=(REALNVP_SIZE, REALNVP_SIZE, 3), variable_shape=True,
                             notes={"preprocessing": "realnvp: short side 96 (pyramid_reduce)"})
    size = opts.resolution
    return DatasetSource("lsun", root, splits, channels=3, num_classes=1,
                         image_shape=(size, size, 3),
                         notes={"preprocessing": "centre crop + Lanczos resize"})
