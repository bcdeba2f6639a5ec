"""What every converter hands the writer: splits of examples, read in a fixed order.

A converter (one module per source format) turns a user's files into a DatasetSource whose
splits can be read in [start, stop) ranges, so the writer can write (and resume) one shard at a
time. Random-access sources are read in a seeded permutation so that every shard holds a mix
of the data (classes stored in order would otherwise end up in a few shards / workers).
"""
import dataclasses
import os
from typing import Callable, Iterator, Optional

import numpy as np

from tfglow.data.errors import DataError
# Image helpers live in the library (which never imports data_prep); re-exported here.
from tfglow.data.imageops import centre_crop, crop_resize, load_image, to_array  # noqa: F401

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff")


@dataclasses.dataclass
class Example:
    """One image: uint8 [H, W, C], an int label, optional attributes, and where it came from."""
    image: np.ndarray
    label: int = 0
    attr: Optional[np.ndarray] = None
    origin: str = ""


@dataclasses.dataclass
class SplitSource:
    """`count` examples; `read(start, stop)` yields examples start..stop-1 of the fixed order."""
    count: int
    read: Callable[[int, int], Iterator[Example]]


@dataclasses.dataclass
class DatasetSource:
    name: str
    source: str
    splits: dict                      # split name -> SplitSource (train first)
    channels: int = 3
    num_classes: int = 1              # 1 for unlabelled data (all labels 0)
    label_names: Optional[list] = None
    attr_names: Optional[list] = None
    attr_encoding: Optional[str] = None
    image_shape: Optional[tuple] = None   # (H, W, C) when known without decoding
    variable_shape: bool = False          # LSUN RealNVP: short side fixed, long side varies
    notes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """Command-line options the converters use (each reads only what it needs)."""
    source: Optional[str] = None
    val_fraction: Optional[float] = None
    seed: int = 0
    resolution: Optional[int] = None      # largest requested output size, if any
    attr: Optional[str] = None            # celeba: attribute file
    image_list: Optional[str] = None      # celeba: CelebA-HQ image_list.txt (HQ index -> file)
    realnvp: bool = False                 # lsun: RealNVP preprocessing (short side 96)
    resize: str = "none"                  # "crop": centre crop + resize; "pad": zero-pad
    labels: str = "auto"                  # images: "auto" | "subdirs" | "none"
    channels: int = 3


def require_source(opts, what):
    """The --source path, which must exist."""
    if not opts.source:
        raise DataError(None, f"--source is required: {what}")
    if not os.path.exists(opts.source):
        raise DataError(opts.source, f"source does not exist (expected {what})")
    return opts.source


def seeded_order(n, seed):
    return np.random.RandomState(seed).permutation(n)


def split_counts(n, val_fraction, origin):
    """(n_train, n_val) for a source without a split: the last round(n * val_fraction) images."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(origin, f"--val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if n - n_val < 1:
        raise DataError(origin, f"{n} images leave nothing to train on with val_fraction {val_fraction}")
    return n - n_val, n_val


def indexed_split(items, load, order=None):
    """SplitSource over a list of cheap handles (`load(item) -> Example`), in `order`."""
    order = np.arange(len(items)) if order is None else np.asarray(order)

    def read(start, stop):
        for i in order[start:stop]:
            yield load(items[int(i)])

    return SplitSource(len(order), read)


def array_split(images, labels, origin, order=None, attrs=None):
    """SplitSource over in-memory arrays images uint8 [N, H, W, C], labels [N]."""
    def load(i):
        return Example(images[i], int(labels[i]), None if attrs is None else attrs[i],
                       f"{origin}[{i}]")

    return indexed_split(list(range(len(images))), load, order)










def list_images(root):
    """Sorted relative paths of all image files under `root` (recursive, hidden files skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


def natural_key(name):
    """Sort key putting 2.png before 10.png."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def pad_to(image, size, origin):
    """Zero-pads an [H, W, C] image to size x size, centred (the MNIST 28 -> 32 rule)."""
    h, w = image.shape[:2]
    if h > size or w > size:
        raise DataError(origin, f"image is {h}x{w}, larger than the padded size {size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(image, ((top, size - h - top), (left, size - w - left), (0, 0)))


def next_power_of_two(n):
    return 1 << (int(n) - 1).bit_length()


def apply_resize(image, opts, origin):
    """--resize: "none" keeps the image, "crop" centre-crops and resizes to --resolution,
    "pad" zero-pads to --resolution (default: the next power of two)."""
    if opts.resize == "none":
        return image
    if opts.resize == "crop":
        if not opts.resolution:
            raise DataError(origin, "--resize crop needs --resolution")
        return crop_resize(image, opts.resolution, origin)
    if opts.resize == "pad":
        return pad_to(image, opts.resolution or next_power_of_two(max(image.shape[:2])), origin)
    raise DataError(origin, f"--resize must be none, crop or pad, got {opts.resize!r}")


def resized_shape(opts, channels):
    """The known output shape after --resize crop / pad with --resolution, else None."""
    if opts.resize in ("crop", "pad") and opts.resolution:
        return (opts.resolution, opts.resolution, channels)
    return None
