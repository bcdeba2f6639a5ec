"""Any folder of images (searched recursively).

Labels: with `--labels auto` (default) images inside class sub-folders get the sorted folder
index as label (folder names become label_names) and images directly in the folder get 0;
mixing both is an error. Splits: sub-folders `train/` and `validation/` (or `val`, `valid`,
`test`) are used as the splits; otherwise the last `--val_fraction` of a seeded shuffle is the
validation split. Sizes: all images must have one size unless `--resize crop` (centre crop and
Lanczos resize to `--resolution`, the original's LSUN rule) or `--resize pad` (zero-pad).
"""
import os

from data_prep.source import (DatasetSource, Example, apply_resize, indexed_split, list_images,
                              load_image, require_source, resized_shape, seeded_order,
                              split_counts)
from tfglow.data.errors import DataError

VAL_NAMES = ("validation", "val", "valid", "test")
DEFAULT_VAL_FRACTION = 0.1


def _labels_for(root, rel_paths, mode):
    """(labels per path, label names or None)."""
    tops = [p.split(os.sep)[0] if os.sep in p else None for p in rel_paths]
    in_dirs = [t is not None for t in tops]
    if mode == "none" or (mode == "auto" and not any(in_dirs)):
        return [0] * len(rel_paths), None
    if not all(in_dirs):
        loose = rel_paths[in_dirs.index(False)]
        raise DataError(os.path.join(root, loose), "image lies outside the class sub-folders; "
                                                   "pass --labels none to ignore the folders")
    names = sorted(set(tops))
    index = {n: i for i, n in enumerate(names)}
    return [index[t] for t in tops], names


def make_loader(root, opts):
    """(item -> Example) for (relative path, label) items, applying --resize."""
    if opts.resize == "crop" and not opts.resolution:
        raise DataError(root, "--resize crop needs --resolution")

    def load(item):
        rel, label = item
        path = os.path.join(root, rel)
        img = load_image(path, path, opts.channels)
        return Example(apply_resize(img, opts, path), label, None, path)

    return load


def open_source(opts):
    root = require_source(opts, "a folder of images")
    if not os.path.isdir(root):
        raise DataError(root, "expected a folder of images")
    subdirs = {d.lower(): d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    val_dir = next((subdirs[n] for n in VAL_NAMES if n in subdirs), None)
    if "train" in subdirs and val_dir:
        parts = {"train": os.path.join(root, subdirs["train"]),
                 "validation": os.path.join(root, val_dir)}
        files = {k: list_images(v) for k, v in parts.items()}
        if not files["train"]:
            raise DataError(parts["train"], "no images found")
        labels_train, names = _labels_for(parts["train"], files["train"], opts.labels)
        labels_val, names_val = _labels_for(parts["validation"], files["validation"], opts.labels)
        if names and names_val and not set(names_val) <= set(names):
            extra = sorted(set(names_val) - set(names))[0]
            raise DataError(os.path.join(parts["validation"], extra),
                            "class folder has no counterpart in train/")
        if names:  # validation folders use the train folders' label numbering
            labels_val = [names.index(f.split(os.sep)[0]) for f in files["validation"]]
        splits = {}
        for split, labels in (("train", labels_train), ("validation", labels_val)):
            items = list(zip(files[split], labels))
            order = seeded_order(len(items), opts.seed) if split == "train" else None
            if items:
                splits[split] = indexed_split(items, make_loader(parts[split], opts), order)
    else:
        rel = list_images(root)
        if not rel:
            raise DataError(root, "no images found (png, jpg, jpeg, webp, bmp, ppm, tif)")
        labels, names = _labels_for(root, rel, opts.labels)
        frac = DEFAULT_VAL_FRACTION if opts.val_fraction is None else opts.val_fraction
        n_train, n_val = split_counts(len(rel), frac, root)
        order = seeded_order(len(rel), opts.seed)
        items = list(zip(rel, labels))
        load = make_loader(root, opts)
        splits = {"train": indexed_split(items, load, order[:n_train])}
        if n_val:
            splits["validation"] = indexed_split(items, load, order[n_train:])
    shape = resized_shape(opts, opts.channels)
    return DatasetSource("images", root, splits, channels=opts.channels,
                         num_classes=len(names) if names else 1, label_names=names,
                         image_shape=shape)
