"""`dataset.json` (the manifest data_prep writes last) and locating / checking shards.

A data directory is either ours (with `dataset.json`) or the original release's (no manifest:
`<data_dir>/<split>/<split>-rXX-s-SSSS-of-NNNN.tfrecords`, found by glob as the original did).
"""
import dataclasses
import glob
import json
import os

import numpy as np

from tfglow.data.errors import DataError
from tfglow.data.records import (is_power_of_two, parse_example_numpy, parse_shard_name,
                                 resolution_tag, sha256_file)

MANIFEST_NAME = "dataset.json"
STATE_NAME = ".data_prep_state.json"  # present only while data_prep is (or was) running
FORMAT = "tfglow-tfrecords/1"
_REQUIRED_KEYS = ("format", "name", "n_bits_x", "channels", "splits")


@dataclasses.dataclass(frozen=True)
class ShardSet:
    """What `make_dataset` reads for one (split, resolution).

    paths: sorted shard paths; counts: records per shard (None without a manifest);
    shape: stored [H, W, C] (None when shapes vary, e.g. LSUN RealNVP); stored_size: the
    stored image size the shard names refer to; n_bits_x: bit depth of the stored values.
    """
    data_dir: str
    split: str
    paths: tuple
    counts: tuple
    shape: tuple
    stored_size: int
    channels: int
    n_bits_x: int
    num_classes: int
    n_attr: int
    manifest: dict

    @property
    def num_examples(self):
        return None if self.counts is None else int(sum(self.counts))


def atomic_write_json(path, obj):
    """Writes JSON to a temporary file in the same folder, fsyncs it, then renames it over `path`."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_manifest(data_dir):
    """The parsed `dataset.json` of `data_dir`, or None if there is none."""
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(path, f"unreadable manifest ({e})") from None
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing or manifest.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} manifest (missing {missing or 'format'})")
    return manifest


def _manifest_entry(manifest, data_dir, split, resolution, rnd_crop):
    path = os.path.join(data_dir, MANIFEST_NAME)
    splits = manifest["splits"]
    if split not in splits:
        raise DataError(path, f"no split {split!r}; the manifest has {sorted(splits)}")
    entries = splits[split]["resolutions"]
    entry = entries.get(str(resolution))
    if entry is None and rnd_crop:
        # Random crops come from larger stored images with the same rXX tag (LSUN: 96 -> 64).
        entry = next((e for e in entries.values()
                      if e["tag"] == resolution_tag(resolution) and e["size"] >= resolution), None)
    if entry is None:
        raise DataError(path, f"split {split!r} has no {resolution}x{resolution} records; "
                              f"stored sizes: {sorted(int(k) for k in entries)}")
    if entry.get("shape") is None and not rnd_crop:
        raise DataError(path, f"split {split!r} stores images of varying shape (short side "
                              f"{entry['size']}); read them with rnd_crop=True")
    return entry


def _check_files_against_manifest(data_dir, split, entry):
    """Names of manifest shards must equal the shard files on disk, with the recorded sizes."""
    split_dir = os.path.join(data_dir, split)
    expected = {s["file"]: s for s in entry["shards"]}
    on_disk = {os.path.basename(p) for p in
               glob.glob(os.path.join(split_dir, f"{split}-r{entry['tag']:02d}-s-*-of-*.tfrecords"))}
    for name in sorted(expected):
        full = os.path.join(split_dir, name)
        if name not in on_disk:
            raise DataError(full, f"shard listed in {MANIFEST_NAME} is missing")
        size = os.path.getsize(full)
        if size != expected[name]["bytes"]:
            raise DataError(full, f"shard has {size} bytes but {MANIFEST_NAME} records "
                                  f"{expected[name]['bytes']} (truncated or replaced)")
    for name in sorted(on_disk - set(expected)):
        raise DataError(os.path.join(split_dir, name),
                        f"shard file is not listed in {MANIFEST_NAME} (left over from another run?)")
    return tuple(os.path.join(split_dir, s["file"]) for s in entry["shards"])


def _glob_original_layout(data_dir, split, tag):
    """The original's layout: every shard `<split>-rXX-s-SSSS-of-NNNN` present, none twice."""
    split_dir = os.path.join(data_dir, split)
    pattern = os.path.join(split_dir, f"{split}-r{tag:02d}-s-*-of-*.tfrecords")
    if os.path.exists(os.path.join(data_dir, STATE_NAME)):
        raise DataError(data_dir, "data preparation did not finish (found "
                                  f"{STATE_NAME} but no {MANIFEST_NAME}); rerun data_prep")
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DataError(pattern, "no TFRecord shards match")
    parsed = [parse_shard_name(os.path.basename(p)) for p in paths]
    totals = {p["count"] for p in parsed if p}
    if None in parsed or len(totals) != 1:
        raise DataError(split_dir, f"shard names disagree on the shard count: {sorted(totals)}")
    total = totals.pop()
    have = {p["index"] for p in parsed}
    missing = [i for i in range(total) if i not in have]
    if missing:
        from tfglow.data.records import shard_name
        raise DataError(os.path.join(split_dir, shard_name(split, tag, missing[0], total)),
                        f"shard missing: only {len(have)} of {total} shards present")
    return tuple(paths)


def _peek_shape(path):
    import tensorflow as tf

    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise DataError(path, f"unreadable TFRecord file ({e.message.splitlines()[0]})") from None
    if first is None:
        raise DataError(path, "shard holds no records")
    image, _, attr = parse_example_numpy(first.numpy(), path)
    return image.shape, (0 if attr is None else len(attr))


def find_shards(data_dir, split, resolution, rnd_crop=False):
    """Locates and checks the shards for (split, resolution); returns a ShardSet.

    With a manifest: its file list must match the files on disk (names and byte sizes; hashes
    are checked only by `verify_dataset`). Without one (the original release's data): all
    NNNN shards must be present, and the first record fixes the stored shape.
    """
    if not is_power_of_two(resolution):
        raise DataError(data_dir, f"resolution {resolution} is not a power of two")
    if not os.path.isdir(data_dir):
        raise DataError(data_dir, "data directory does not exist")
    manifest = load_manifest(data_dir)
    if manifest is not None:
        entry = _manifest_entry(manifest, data_dir, split, resolution, rnd_crop)
        paths = _check_files_against_manifest(data_dir, split, entry)
        shape = tuple(entry["shape"]) if entry.get("shape") else None
        return ShardSet(data_dir, split, paths, tuple(s["count"] for s in entry["shards"]),
                        shape, int(entry["size"]), int(manifest["channels"]),
                        int(manifest["n_bits_x"]), int(manifest.get("num_classes") or 0),
                        len(manifest.get("attr_names") or ()), manifest)
    tag = resolution_tag(resolution)
    paths = _glob_original_layout(data_dir, split, tag)
    shape, n_attr = _peek_shape(paths[0])
    if not rnd_crop and tuple(shape[:2]) != (resolution, resolution):
        raise DataError(paths[0], f"records are {shape[0]}x{shape[1]}, not {resolution}x{resolution}"
                                  " (pass rnd_crop=True to crop larger images)")
    if rnd_crop and min(shape[:2]) < resolution:
        raise DataError(paths[0], f"records are {shape[0]}x{shape[1]}, too small to crop "
                                  f"{resolution}x{resolution}")
    return ShardSet(data_dir, split, paths, None, None if rnd_crop else tuple(shape),
                    int(min(shape[:2])), int(shape[2]), 8, 0, n_attr, None)


def count_records(path):
    """(number of records, list of bad-record messages) of one TFRecord file; names the file."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(path).batch(1024)
    spec = {"shape": tf.io.FixedLenFeature([3], tf.int64),
            "data": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([1], tf.int64)}
    n = 0
    try:
        for batch in ds:
            feats = tf.io.parse_example(batch, spec)
            sizes = tf.strings.length(feats["data"]).numpy()
            need = np.prod(feats["shape"].numpy(), axis=1)
            bad = np.nonzero(sizes != need)[0]
            if bad.size:
                raise DataError(path, f"record {n + int(bad[0])} has {sizes[bad[0]]} data bytes "
                                      f"but its shape needs {need[bad[0]]}")
            n += int(sizes.shape[0])
    except tf.errors.OpError as e:
        raise DataError(path, f"corrupt or truncated after record {n} "
                              f"({e.message.splitlines()[0].strip()})") from None
    return n


def verify_dataset(data_dir, splits=None, resolutions=None):
    """Deep check of a prepared data directory: every shard's sha256 and record count against
    `dataset.json`. Slow on big data sets (reads every byte), so `make_dataset` only does it
    with `verify=True`; `python -m data_prep verify DIR` runs it from the command line.

    Returns {"files": n, "records": n, "bytes": n}; raises DataError naming the first bad file.
    """
    manifest = load_manifest(data_dir)
    if manifest is None:
        raise DataError(os.path.join(data_dir, MANIFEST_NAME), "no manifest to verify against")
    totals = {"files": 0, "records": 0, "bytes": 0}
    for split, info in sorted(manifest["splits"].items()):
        if splits is not None and split not in splits:
            continue
        for res, entry in sorted(info["resolutions"].items()):
            if resolutions is not None and int(res) not in resolutions:
                continue
            paths = _check_files_against_manifest(data_dir, split, entry)
            n_split = 0
            for path, shard in zip(paths, entry["shards"]):
                digest = sha256_file(path)
                if digest != shard["sha256"]:
                    raise DataError(path, f"sha256 {digest[:12]}... differs from the manifest's "
                                          f"{shard['sha256'][:12]}...")
                n = count_records(path)
                if n != shard["count"]:
                    raise DataError(path, f"holds {n} records; the manifest says {shard['count']}")
                n_split += n
                totals["files"] += 1
                totals["bytes"] += shard["bytes"]
            if n_split != info["count"]:
                raise DataError(os.path.join(data_dir, MANIFEST_NAME),
                                f"split {split!r} at {res}: shards hold {n_split} records, "
                                f"the manifest says {info['count']}")
            totals["records"] += n_split
    return totals
