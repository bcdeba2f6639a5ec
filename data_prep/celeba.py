"""CelebA-HQ: a folder of images plus the CelebA attribute file.

Attribute file layout (`list_attr_celeba.txt`): a count line, a header of 40 attribute names,
then one row per image: file name and 40 values of +1 / -1. The CelebAMask-HQ file
(`CelebAMask-HQ-attribute-anno.txt`) has the same layout, keyed by the HQ file names.

Images are matched to rows by file name (or stem); CelebA-HQ files named by HQ index
(00000.png ...) are matched through the CelebA-HQ `image_list.txt` (idx orig_idx orig_file ...)
when given or found next to the images. Images sorted by name; the last `--val_fraction`
(default 0.1: 27,000 / 3,000 of the 30,000 images, as the paper) form the validation split.
Records carry label 0 and `attr`: the 40 values kept as +1 / -1, as the original release's
CelebA records and demo (attr == 1 / attr == -1).
"""
import os

import numpy as np

from data_prep.images import make_loader
from data_prep.source import (DatasetSource, Example, indexed_split, list_images, natural_key,
                              require_source, resized_shape, seeded_order, split_counts)
from tfglow.data.errors import DataError

N_ATTR = 40
ATTR_FILES = ("list_attr_celeba.txt", "CelebAMask-HQ-attribute-anno.txt")
DEFAULT_VAL_FRACTION = 0.1


def read_attr_file(path):
    """(attribute names [40], {file name: int64 [40] of +1/-1}) from a CelebA attribute file."""
    try:
        with open(path) as f:
            lines = [ln.split() for ln in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read attribute file ({e})") from None
    lines = [ln for ln in lines if ln]
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise DataError(path, "attribute file must start with an image count line")
    names = lines[1]
    if len(names) != N_ATTR:
        raise DataError(path, f"line 2 must name {N_ATTR} attributes, found {len(names)}")
    rows = {}
    for k, row in enumerate(lines[2:], start=3):
        if len(row) != N_ATTR + 1:
            raise DataError(path, f"line {k} has {len(row) - 1} values, expected {N_ATTR}")
        try:
            values = np.array([int(v) for v in row[1:]], np.int64)
        except ValueError:
            raise DataError(path, f"line {k}: attribute values must be +1 or -1") from None
        if not np.isin(values, (-1, 1)).all():
            raise DataError(path, f"line {k}: attribute values must be +1 or -1")
        rows[row[0]] = values
    if int(lines[0][0]) != len(rows):
        raise DataError(path, f"count line says {lines[0][0]} images but {len(rows)} rows follow")
    return names, rows


def read_image_list(path):
    """CelebA-HQ image_list.txt -> {HQ index: original CelebA file name}."""
    out = {}
    with open(path) as f:
        for k, line in enumerate(f, start=1):
            parts = line.split()
            if k == 1 and parts and not parts[0].isdigit():
                continue  # header: idx orig_idx orig_file proc_md5 final_md5
            if len(parts) < 3 or not parts[0].isdigit():
                raise DataError(path, f"line {k} is not 'idx orig_idx orig_file ...'")
            out[int(parts[0])] = parts[2]
    return out


def _find_next_to(root, names, given):
    if given:
        if not os.path.isfile(given):
            raise DataError(given, "file does not exist")
        return given
    for folder in (root, os.path.dirname(os.path.abspath(root))):
        for n in names:
            if os.path.isfile(os.path.join(folder, n)):
                return os.path.join(folder, n)
    return None


def match_attributes(root, rel_paths, rows, attr_path, image_list_path):
    """attr int64 [N, 40] for the images, by name, stem, or image_list.txt mapping."""
    by_stem = {os.path.splitext(k)[0]: v for k, v in rows.items()}
    hq = read_image_list(image_list_path) if image_list_path else None
    out = []
    for rel in rel_paths:
        base = os.path.basename(rel)
        stem = os.path.splitext(base)[0]
        attr = rows.get(base)
        if attr is None:
            attr = by_stem.get(stem)
        if attr is None and hq is not None:
            digits = "".join(c for c in stem if c.isdigit())
            orig = hq.get(int(digits)) if digits else None
            attr = rows.get(orig) if orig else None
            if attr is None and orig:
                attr = by_stem.get(os.path.splitext(orig)[0])
        if attr is None:
            hint = "" if hq is not None else " (pass --image_list for CelebA-HQ index names)"
            raise DataError(os.path.join(root, rel), f"no row for this image in {attr_path}{hint}")
        out.append(attr)
    return np.stack(out)


def open_source(opts):
    root = require_source(opts, "a folder of CelebA-HQ images")
    if not os.path.isdir(root):
        raise DataError(root, "expected a folder of images")
    attr_path = _find_next_to(root, ATTR_FILES, opts.attr)
    if attr_path is None:
        raise DataError(root, f"no attribute file: pass --attr (looked for {', '.join(ATTR_FILES)} "
                              "in the folder and its parent)")
    names, rows = read_attr_file(attr_path)
    rel = sorted(list_images(root), key=natural_key)
    if not rel:
        raise DataError(root, "no images found")
    image_list = _find_next_to(root, ("image_list.txt",), opts.image_list)
    attrs = match_attributes(root, rel, rows, attr_path, image_list)
    frac = DEFAULT_VAL_FRACTION if opts.val_fraction is None else opts.val_fraction
    n_train, n_val = split_counts(len(rel), frac, root)
    load_image = make_loader(root, opts)
    items = [(p, i) for i, p in enumerate(rel)]

    def load(item):
        ex = load_image((item[0], 0))
        return Example(ex.image, 0, attrs[item[1]], ex.origin)

    splits = {"train": indexed_split(items[:n_train], load, seeded_order(n_train, opts.seed))}
    if n_val:
        splits["validation"] = indexed_split(items[n_train:], load)
    shape = resized_shape(opts, opts.channels)
    return DatasetSource("celeba", root, splits, channels=opts.channels, num_classes=1,
                         attr_names=names, image_shape=shape,
                         attr_encoding="+1 / -1 as in the CelebA attribute file",
                         notes={"attr_file": os.path.abspath(attr_path)})
