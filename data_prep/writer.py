"""Writes a DatasetSource as Glow TFRecords: shards, several resolutions, bit depth, manifest.

Safety rules:
  - a shard is written under a hidden temporary name (`.<name>.partial-<pid>`, which no shard
    glob matches) and renamed only once complete, so a crash never leaves a complete-looking
    shard;
  - progress is kept in `.data_prep_state.json` (rewritten atomically after every shard); a
    rerun with the same options skips the finished shards and redoes the rest, a rerun with
    other options replaces the unfinished output;
  - `dataset.json` is written last, atomically; a finished data set is only replaced with
    `overwrite=True`.
"""
import dataclasses
import glob
import hashlib
import json
import os
import sys

import numpy as np

from tfglow.data.errors import DataError
from tfglow.data.imageops import box_downsample, quantize
from tfglow.data.manifest import FORMAT, MANIFEST_NAME, STATE_NAME, atomic_write_json, load_manifest
from tfglow.data.records import (is_power_of_two, parse_shard_name, resolution_tag,
                                 serialize_example, sha256_file, shard_name)


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    """resolutions: output sizes (powers of two); empty = the source's native size.
    min_resolution: also write every power of two from the largest size down to this one."""
    resolutions: tuple = ()
    min_resolution: int = 0
    n_bits_x: int = 8
    shards: int = 1
    val_shards: int = 0          # 0 = proportional to the split sizes
    overwrite: bool = False
    quiet: bool = False


def fingerprint(options):
    """Identity of a preparation run (source and every option that changes the output)."""
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def plan_sizes(config, native_shape, variable_shape, origin):
    """Output sizes, largest first, checked against the source's image shape."""
    sizes = sorted({int(r) for r in config.resolutions}, reverse=True)
    if variable_shape:
        if len(sizes) > 1 or config.min_resolution:
            raise DataError(origin, "variable-shape output (LSUN RealNVP) has a single resolution")
        return [min(native_shape[:2])]
    h, w = native_shape[:2]
    if not sizes:
        if h != w or not is_power_of_two(h):
            raise DataError(origin, f"images are {h}x{w}; give --resolution (a power of two) "
                                    "and, for non-square images, --resize crop")
        sizes = [h]
    for s in sizes:
        if not is_power_of_two(s):
            raise DataError(origin, f"resolution {s} is not a power of two")
    if config.min_resolution:
        if not is_power_of_two(config.min_resolution):
            raise DataError(origin, f"min_resolution {config.min_resolution} is not a power of two")
        s = sizes[0] // 2
        while s >= config.min_resolution:
            sizes.append(s)
            s //= 2
        sizes = sorted(set(sizes), reverse=True)
    if h != w or h % sizes[0] or not is_power_of_two(h // sizes[0]):
        raise DataError(origin, f"images are {h}x{w}; resolution {sizes[0]} needs square images "
                                "whose side is it times a power of two (2x2 box downsampling)")
    return sizes


def shard_ranges(count, shards):
    """[(start, stop)] of `shards` contiguous, near-equal runs covering range(count)."""
    bounds = np.linspace(0, count, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def split_shard_counts(source, config):
    """Shards per split: --shards for train, --val_shards or proportional for the rest; never
    more shards than records."""
    n_train = source.splits["train"].count
    out = {}
    for split, s in source.splits.items():
        if split == "train":
            n = config.shards
        elif config.val_shards:
            n = config.val_shards
        else:
            n = int(np.ceil(config.shards * s.count / max(n_train, 1)))
        out[split] = max(1, min(n, s.count))
    return out


class _Progress:
    def __init__(self, quiet):
        self.quiet = quiet

    def __call__(self, msg):
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_outputs(out_dir, splits):
    """Deletes our shard files and leftovers (never anything else) from the split folders."""
    for split in splits:
        split_dir = os.path.join(out_dir, split)
        for path in glob.glob(os.path.join(split_dir, "*.tfrecords")) + \
                glob.glob(os.path.join(split_dir, ".*.partial-*")):
            name = os.path.basename(path)
            if parse_shard_name(name) or ".partial-" in name:
                os.remove(path)


class _ExampleChecker:
    """Validates every example (shape consistency, channels, labels, attributes) and turns it
    into its stored levels."""

    def __init__(self, source, sizes, n_bits_x, shape):
        self.source, self.sizes, self.n_bits_x = source, sizes, n_bits_x
        self.shape, self.first_origin = shape, None

    def levels(self, ex):
        src = self.source
        img = ex.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
            raise DataError(ex.origin, f"decoded to {getattr(img, 'dtype', type(img))} "
                                       f"{getattr(img, 'shape', '')}, not uint8 [H, W, C]")
        if img.shape[2] != src.channels:
            raise DataError(ex.origin, f"image has {img.shape[2]} channels, expected {src.channels}")
        if not src.variable_shape:
            if self.first_origin is None:
                self.first_origin = ex.origin
            if img.shape != self.shape:
                raise DataError(ex.origin, f"image is {img.shape[0]}x{img.shape[1]}x{img.shape[2]} "
                                           f"but images before it (e.g. {self.first_origin}) are "
                                           f"{self.shape[0]}x{self.shape[1]}x{self.shape[2]}; "
                                           "mixed image sizes")
        if not 0 <= int(ex.label) < max(src.num_classes, 1):
            raise DataError(ex.origin, f"label {ex.label} out of range 0..{src.num_classes - 1}")
        if src.attr_names is not None:
            if ex.attr is None or len(ex.attr) != len(src.attr_names):
                raise DataError(ex.origin, f"needs {len(src.attr_names)} attributes, got "
                                           f"{None if ex.attr is None else len(ex.attr)}")
        if src.variable_shape:
            return [quantize(img, self.n_bits_x)]
        return [quantize(box_downsample(img, s, ex.origin), self.n_bits_x) for s in self.sizes]


def _write_shard(split_dir, split, index, n_shards, examples, tags, checker):
    """Writes one shard at every resolution; returns {size: shard record} after renaming the
    finished temporary files to their final names."""
    import tensorflow as tf

    finals = [os.path.join(split_dir, shard_name(split, t, index, n_shards)) for t in tags]
    tmps = [os.path.join(split_dir, f".{os.path.basename(f)}.partial-{os.getpid()}") for f in finals]
    counts = 0
    writers = [tf.io.TFRecordWriter(t) for t in tmps]
    try:
        for ex in examples:
            for w, level in zip(writers, checker.levels(ex)):
                w.write(serialize_example(level, int(ex.label), ex.attr))
            counts += 1
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.close()
        for t in tmps:
            if os.path.exists(t):
                os.remove(t)
        raise
    records = []
    for tmp, final in zip(tmps, finals):
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        records.append({"file": os.path.basename(final), "count": counts,
                        "bytes": os.path.getsize(tmp), "sha256": sha256_file(tmp)})
        os.replace(tmp, final)
    _fsync_dir(split_dir)
    return records


def _native_shape(source):
    if source.image_shape is not None:
        return tuple(source.image_shape)
    train = source.splits["train"]
    first = next(iter(train.read(0, 1)), None)
    if first is None:
        raise DataError(source.source, "source holds no images")
    return tuple(first.image.shape)


def _state_from_manifest(manifest):
    """The resume state equivalent to a finished manifest (shard records per size)."""
    splits = {}
    for split, info in manifest["splits"].items():
        sizes = [str(r) for r in manifest["resolutions"]]
        n = len(info["resolutions"][sizes[0]]["shards"])
        shards = {str(i): [info["resolutions"][r]["shards"][i] for r in sizes] for i in range(n)}
        splits[split] = {"count": info["count"], "shards": shards}
    return {"fingerprint": manifest["fingerprint"], "splits": splits}


def _shard_present(split_dir, records):
    return all(os.path.exists(os.path.join(split_dir, r["file"])) and
               os.path.getsize(os.path.join(split_dir, r["file"])) == r["bytes"] for r in records)


def _all_shards_present(out_dir, state):
    return all(_shard_present(os.path.join(out_dir, split), recs)
               for split, info in state["splits"].items() for recs in info["shards"].values())


def _start(out_dir, fp, config, log):
    """Decides between finished / resume / fresh start; returns the state dict to continue."""
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    state_path = os.path.join(out_dir, STATE_NAME)
    manifest = load_manifest(out_dir) if os.path.exists(manifest_path) else None
    if manifest is not None and manifest.get("fingerprint") == fp and not config.overwrite:
        state = _state_from_manifest(manifest)
        if _all_shards_present(out_dir, state):
            return manifest, None
        # Same data set, but shards were lost: rewrite just those (manifest dropped first).
        log(f"{out_dir}: shards missing or changed; rewriting them")
        os.remove(manifest_path)
        return None, state
    if manifest is not None and not config.overwrite:
        raise DataError(manifest_path, "already holds a finished data set made from another "
                                       "source or options; pass --overwrite to replace it")
    state = None
    if os.path.exists(state_path):
        try:
            with open(state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = None
    if state is not None and state.get("fingerprint") == fp and manifest is None:
        log(f"resuming the unfinished preparation in {out_dir}")
        return None, state
    stale = glob.glob(os.path.join(out_dir, "*", "*-r??-s-*-of-*.tfrecords"))
    if stale and manifest is None and state is None and not config.overwrite:
        raise DataError(out_dir, f"already holds TFRecord shards ({stale[0]}) not written by "
                                 "data_prep; pass --overwrite to replace them or pick another --out")
    # Fresh start: the manifest goes first, so a crash below never leaves a stale one.
    if manifest is not None:
        os.remove(manifest_path)
    old_splits = set((manifest or {}).get("splits", {})) | set((state or {}).get("splits", {}))
    _remove_outputs(out_dir, old_splits | {"train", "validation"})
    return None, {"fingerprint": fp, "splits": {}}


def prepare(source, out_dir, config, options):
    """Writes `source` into `out_dir` (see module doc) and returns the manifest dict.

    options: the JSON-able options that define the output (fingerprinted for resume).
    """
    log = _Progress(config.quiet)
    if config.n_bits_x not in (5, 8):
        raise DataError(None, f"--n_bits_x must be 8 or 5, got {config.n_bits_x}")
    if config.shards < 1:
        raise DataError(None, f"--shards must be at least 1, got {config.shards}")
    if "train" not in source.splits or source.splits["train"].count < 1:
        raise DataError(source.source, "source holds no training images")
    os.makedirs(out_dir, exist_ok=True)
    fp = fingerprint(options)
    finished, state = _start(out_dir, fp, config, log)
    if finished is not None:
        log(f"{out_dir} already holds this data set (dataset.json matches); nothing to do")
        return finished
    native = _native_shape(source)
    sizes = plan_sizes(config, native, source.variable_shape, source.source)
    tags = [resolution_tag(s) for s in sizes]
    if len(set(tags)) != len(tags):
        raise DataError(source.source, f"resolutions {sizes} share a file tag")
    shard_counts = split_shard_counts(source, config)
    state_path = os.path.join(out_dir, STATE_NAME)
    atomic_write_json(state_path, state)
    for split, split_source in source.splits.items():
        split_dir = os.path.join(out_dir, split)
        os.makedirs(split_dir, exist_ok=True)
        for leftover in glob.glob(os.path.join(split_dir, ".*.partial-*")):
            os.remove(leftover)  # from a crashed run
        n_shards = shard_counts[split]
        done = state["splits"].setdefault(split, {"count": split_source.count, "shards": {}})
        checker = _ExampleChecker(source, sizes, config.n_bits_x, native)
        for index, (start, stop) in enumerate(shard_ranges(split_source.count, n_shards)):
            prev = done["shards"].get(str(index))
            if prev and _shard_present(split_dir, prev):
                continue  # finished in an earlier run
            records = _write_shard(split_dir, split, index, n_shards,
                                   split_source.read(start, stop), tags, checker)
            if records[0]["count"] != stop - start:
                raise DataError(source.source, f"split {split!r} shard {index}: source gave "
                                               f"{records[0]['count']} images, expected {stop - start}")
            done["shards"][str(index)] = records
            atomic_write_json(state_path, state)
            log(f"{split}: shard {index + 1}/{n_shards} ({stop - start} images)")
    manifest = _manifest(source, config, options, fp, sizes, native, state)
    atomic_write_json(os.path.join(out_dir, MANIFEST_NAME), manifest)
    os.remove(state_path)
    _fsync_dir(out_dir)
    log(f"wrote {out_dir}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items()))
    return manifest


def _manifest(source, config, options, fp, sizes, native, state):
    splits = {}
    for split, info in state["splits"].items():
        shards = [info["shards"][str(i)] for i in range(len(info["shards"]))]
        per_size = {}
        for k, size in enumerate(sizes):
            shape = None if source.variable_shape else [size, size, source.channels]
            per_size[str(size)] = {"size": size, "tag": resolution_tag(size), "shape": shape,
                                   "shards": [s[k] for s in shards]}
        splits[split] = {"count": info["count"], "resolutions": per_size}
    return {
        "format": FORMAT,
        "name": source.name,
        "source": (os.path.abspath(source.source) if source.source and os.path.exists(source.source)
                   else source.source or None),
        "fingerprint": fp,
        "options": options,
        "resolutions": sizes,
        "source_shape": list(native),
        "variable_shape": source.variable_shape,
        "channels": source.channels,
        "n_bits_x": config.n_bits_x,
        "pixel_encoding": "stored value = floor(x / 2**(8 - n_bits_x)) of the 8-bit pixel x",
        "num_classes": source.num_classes,
        "label_names": source.label_names,
        "attr_names": source.attr_names,
        "attr_encoding": source.attr_encoding,
        "splits": splits,
        "notes": source.notes,
    }
