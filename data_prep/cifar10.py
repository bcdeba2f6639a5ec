"""CIFAR-10 from `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/` folder.

Each batch is a pickled dict with `data` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue
values, row-major 32x32) and `labels` (N ints 0..9); `batches.meta` holds `label_names`.
train = data_batch_1..5 (50,000), validation = test_batch (10,000).
"""
import os
import pickle
import tarfile

import numpy as np

from data_prep.source import DatasetSource, array_split, require_source, seeded_order
from tfglow.data.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


class _SafeUnpickler(pickle.Unpickler):
    """Loads the batches' dicts of numpy arrays and lists, nothing that could run code."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _unpickle(fileobj, origin):
    try:
        obj = _SafeUnpickler(fileobj, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - truncated/corrupt pickles raise many types
        raise DataError(origin, f"not a readable CIFAR batch pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(origin, f"CIFAR batch is a {type(obj).__name__}, not a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_arrays(batch, origin):
    """A batch dict -> (images uint8 [N, 32, 32, 3], labels int64 [N]), validated."""
    if "data" not in batch or "labels" not in batch:
        raise DataError(origin, f"CIFAR batch lacks 'data' or 'labels' (has {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(origin, f"'data' is {data.dtype} {data.shape}, expected uint8 N x 3072")
    if len(labels) != len(data):
        raise DataError(origin, f"{len(data)} images but {len(labels)} labels")
    bad = np.nonzero((labels < 0) | (labels > 9))[0]
    if bad.size:
        raise DataError(origin, f"label {labels[bad[0]]} of image {bad[0]} out of range 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _open_members(path):
    """{batch name: (file object factory, origin)} from a tarball or a folder."""
    names = TRAIN_BATCHES + (TEST_BATCH, "batches.meta")
    if os.path.isdir(path):
        folder = path if os.path.exists(os.path.join(path, TEST_BATCH)) else os.path.join(path, FOLDER)
        found = {n: os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))}
        missing = [n for n in names[:-1] if n not in found]
        if missing:
            raise DataError(folder, f"not a CIFAR-10 folder: missing {', '.join(missing)}")
        return {n: ((lambda p=p: open(p, "rb")), p) for n, p in found.items()}, None
    try:
        tar = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise DataError(path, f"not a readable tar archive ({e})") from None
    members = {}
    for m in tar.getmembers():
        parts = m.name.split("/")
        if m.isfile() and len(parts) >= 2 and parts[-2] == FOLDER and parts[-1] in names:
            members[parts[-1]] = m
    missing = [n for n in names[:-1] if n not in members]
    if missing:
        raise DataError(path, f"wrong archive layout: no {FOLDER}/{missing[0]} in the archive "
                              f"(missing {', '.join(missing)})")
    return {n: ((lambda m=m: tar.extractfile(m)), f"{path}:{m.name}") for n, m in members.items()}, tar


def _load(members, names):
    images, labels = [], []
    for n in names:
        opener, origin = members[n]
        try:
            with opener() as f:
                x, y = _batch_arrays(_unpickle(f, origin), origin)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(origin, f"cannot read ({e})") from None
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def open_source(opts):
    path = require_source(opts, "cifar-10-python.tar.gz or the cifar-10-batches-py folder")
    members, tar = _open_members(path)
    try:
        x_train, y_train = _load(members, TRAIN_BATCHES)
        x_test, y_test = _load(members, (TEST_BATCH,))
        names = LABEL_NAMES
        if "batches.meta" in members:
            opener, origin = members["batches.meta"]
            with opener() as f:
                meta = _unpickle(f, origin)
            if "label_names" in meta:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"]]
    finally:
        if tar is not None:
            tar.close()
    return DatasetSource(
        "cifar10", path,
        {"train": array_split(x_train, y_train, f"{path}:train",
                              seeded_order(len(x_train), opts.seed)),
         "validation": array_split(x_test, y_test, f"{path}:{TEST_BATCH}")},
        channels=3, num_classes=10, label_names=names, image_shape=(32, 32, 3))
