"""`tfds:<name>`: a data set already prepared in a local tensorflow-datasets data dir
(--source; default: tfds' own). Nothing is downloaded: an unprepared data set is an error.

Splits: train <- 'train'; validation <- 'validation', else 'test', else the last
--val_fraction of 'train'. Images from the first Image feature, labels from 'label'. --resize crop / pad as for images
(e.g. `--resize pad` puts 28x28 MNIST on 32x32).
"""
import numpy as np

from data_prep.source import (DatasetSource, Example, SplitSource, apply_resize, resized_shape,
                              split_counts)
from tfglow.data.errors import DataError

DEFAULT_VAL_FRACTION = 0.1


def _features(builder, name):
    import tensorflow_datasets as tfds

    feats = builder.info.features
    image_key = "image" if "image" in feats else next(
        (k for k, f in feats.items() if isinstance(f, tfds.features.Image)), None)
    if image_key is None:
        raise DataError(f"tfds:{name}", f"no image feature (features: {sorted(feats)})")
    label = feats["label"] if "label" in feats else None
    num_classes = getattr(label, "num_classes", None) if label is not None else None
    names = list(label.names) if num_classes else None
    return image_key, ("label" if num_classes else None), num_classes, names, feats[image_key].shape


def _split_source(builder, split, image_key, label_key, origin, opts, lo=0, hi=None):
    def dataset():
        try:
            return builder.as_dataset(split=split, shuffle_files=False)
        except Exception as e:  # noqa: BLE001 - tfds raises assorted errors for unprepared data
            raise DataError(origin, f"split {split!r} not readable ({type(e).__name__}: {e}); "
                                    "prepare it with tfds first") from None

    n = int(dataset().cardinality())
    if n < 0:
        n = int(dataset().reduce(0, lambda c, _: c + 1))
    hi = n if hi is None else hi

    def read(start, stop):
        ds = dataset().skip(lo + start).take(stop - start)
        for k, ex in enumerate(ds.as_numpy_iterator()):
            img = np.asarray(ex[image_key], np.uint8)
            img = img if img.ndim == 3 else img[..., None]
            label = int(ex[label_key]) if label_key else 0
            where = f"{origin}/{split}[{lo + start + k}]"
            yield Example(apply_resize(img, opts, where), label, None, where)

    return SplitSource(hi - lo, read), n


def open_source(name, opts):
    import tensorflow_datasets as tfds

    origin = f"tfds:{name}" + (f" in {opts.source}" if opts.source else "")
    try:
        builder = tfds.builder(name, data_dir=opts.source)
    except Exception as e:  # noqa: BLE001
        raise DataError(origin, f"unknown or unreadable tensorflow-datasets data set ({e})") from None
    image_key, label_key, num_classes, names, shape = _features(builder, name)
    available = list(builder.info.splits) or ["train", "validation", "test"]
    if "train" not in available:
        raise DataError(origin, f"no 'train' split (has {available})")
    val_name = next((s for s in ("validation", "test") if s in available), None)
    if val_name is not None:
        train, _ = _split_source(builder, "train", image_key, label_key, origin, opts)
        val, _ = _split_source(builder, val_name, image_key, label_key, origin, opts)
        splits = {"train": train, "validation": val}
    else:
        full, n = _split_source(builder, "train", image_key, label_key, origin, opts)
        frac = DEFAULT_VAL_FRACTION if opts.val_fraction is None else opts.val_fraction
        n_train, n_val = split_counts(n, frac, origin)
        splits = {"train": _split_source(builder, "train", image_key, label_key, origin, opts, 0, n_train)[0]}
        if n_val:
            splits["validation"] = _split_source(builder, "train", image_key, label_key, origin,
                                                 opts, n_train, n)[0]
    channels = int(shape[-1]) if shape and shape[-1] else 3
    fixed = tuple(shape) if shape and None not in shape and opts.resize == "none" else None
    if fixed and len(fixed) == 2:
        fixed = fixed + (1,)
    fixed = resized_shape(opts, channels) or fixed
    return DatasetSource(f"tfds:{name}", opts.source or "", splits, channels=channels,
                         num_classes=num_classes or 1, label_names=names, image_shape=fixed,
                         notes={"tfds_version": str(builder.info.version)})
