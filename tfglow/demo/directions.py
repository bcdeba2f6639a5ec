"""Attribute directions for the demo's sliders: computing all of a data set's at once through
the SavedModel's `encode`, and the npz file that holds them.

    python -m tfglow.demo.directions --model EXPORTED_DIR --data_dir DIR|digits --out directions.npz

The formula is evaluate.py --manipulate's (tfglow.sampling.attribute_direction, Glow section
5.3): for every level i,

    d_i = mean(eps_i | attribute) - mean(eps_i | no attribute)

with "attribute" a CelebA-style attribute (value > 0) or a class (label == k; class-labelled data
such as digits get one direction per class). One pass over the data encodes each image once and
accumulates, in float64, the sum of all latents and, per attribute, the sum over the images that
have it; the mean without is (total - with) / (N - n_with).

File format (one npz): `names` [K] str, `kind` [K] ("attr" or "label"), `index` [K], `n_with`,
`n_without` [K], `z0..z{L-1}` float32 [K, h_i, w_i, c_i], plus `split`, `data_dir`. The demo
also reads evaluate.py's single-direction files (manipulate_ATTR.npz: z_i [h, w, c]).
"""
import argparse
import dataclasses
import os
import sys

import numpy as np

#: Sliders move latents by alpha * d with alpha in [-ALPHA_RANGE, ALPHA_RANGE].
ALPHA_RANGE = 2.0


@dataclasses.dataclass(frozen=True)
class Direction:
    """One slider: name, kind ("attr" or "label"), class / attribute index and the
    direction, a list of L float32 arrays [h, w, c]."""
    name: str
    kind: str
    index: int
    latents: tuple


# ------------------------------------------------------------------------------- computing


def dataset_attributes(info):
    """[(name, kind, index)] of every attribute and class of a data set (a tfglow.data
    ShardSet), named as evaluate.py --manipulate accepts them (class names if the data set
    has them, else the class number)."""
    from tfglow.sampling import known_attributes

    by_key = {}
    for name, key in known_attributes(info).items():
        by_key[key] = name  # known_attributes lists a class by number, then by name: keep the name
    return [(name, kind, index) for (kind, index), name in sorted(by_key.items())]


def compute_directions(encode, latent_shapes, batches, attributes):
    """Directions of all `attributes` ([(name, kind, index)]) over (images, labels[, attr])
    batches, each image encoded once by `encode(images, labels) -> list of L latents`.

    Returns [Direction], n_with [K], n_without [K]. Every attribute needs images with and
    without it (ValueError naming those that lack either).
    """
    from tfglow.sampling import attribute_mask

    dims = [int(np.prod(s)) for s in latent_shapes]
    k = len(attributes)
    total = [np.zeros(d, np.float64) for d in dims]
    with_sum = [np.zeros([k, d], np.float64) for d in dims]
    n_with = np.zeros(k, np.int64)
    n = 0
    for batch in batches:
        images, labels = np.asarray(batch[0]), np.asarray(batch[1])
        attr = np.asarray(batch[2]) if len(batch) > 2 else None
        masks = np.stack([attribute_mask(kind, index, labels, attr)
                          for _, kind, index in attributes], axis=1).astype(np.float64)  # [B, K]
        zs = encode(images, labels)
        for level, z in enumerate(zs):
            flat = np.asarray(z, np.float64).reshape(len(images), -1)
            total[level] += flat.sum(axis=0)
            with_sum[level] += masks.T @ flat
        n_with += masks.sum(axis=0).astype(np.int64)
        n += len(images)
    n_without = n - n_with
    empty = [f"{name} ({w} with, {wo} without)" for (name, _, _), w, wo
             in zip(attributes, n_with, n_without) if min(w, wo) == 0]
    if empty:
        raise ValueError(f"attribute directions need images with and without each attribute; "
                         f"not so for {', '.join(empty)} (use more images)")
    directions = []
    for j, (name, kind, index) in enumerate(attributes):
        latents = tuple(
            (w[j] / n_with[j] - (t - w[j]) / n_without[j]).astype(np.float32).reshape(shape)
            for w, t, shape in zip(with_sum, total, latent_shapes))
        directions.append(Direction(str(name), kind, int(index), latents))
    return directions, n_with, n_without


# ------------------------------------------------------------------------------- the file


def save_directions(path, directions, **meta):
    """Writes [Direction] (and scalar metadata such as n_with, split) to an npz."""
    levels = len(directions[0].latents)
    arrays = {f"z{i}": np.stack([d.latents[i] for d in directions]).astype(np.float32)
              for i in range(levels)}
    np.savez(path, names=np.array([d.name for d in directions]),
             kind=np.array([d.kind for d in directions]),
             index=np.array([d.index for d in directions], np.int64),
             **arrays, **{k: np.asarray(v) for k, v in meta.items()})


def _load_one(path, latent_shapes):
    from tfglow.sampling import load_direction

    try:
        f = np.load(path)  # allow_pickle stays False: a directions file holds arrays only
        if not hasattr(f, "files"):
            raise ValueError("a single array, not an npz archive")
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a directions .npz ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]})") from None
    with f:
        files = set(f.files)
        if "names" not in files:  # evaluate.py --manipulate's single direction
            name = str(f["attribute"]) if "attribute" in files else \
                os.path.splitext(os.path.basename(path))[0].removeprefix("manipulate_")
            kind = str(f["kind"]) if "kind" in files else "attr"
            index = int(f["index"]) if "index" in files else -1
            shim = type("Shapes", (), {"latent_shapes": latent_shapes})
            return [Direction(name, kind, index, tuple(load_direction(path, shim)))]
        names = [str(n) for n in f["names"]]
        kinds = [str(k) for k in f["kind"]] if "kind" in files else ["attr"] * len(names)
        indices = [int(i) for i in f["index"]] if "index" in files else [-1] * len(names)
        levels = []
        for i, shape in enumerate(latent_shapes):
            z = f[f"z{i}"] if f"z{i}" in files else None
            if z is None or tuple(z.shape) != (len(names), *shape):
                got = "missing" if z is None else list(z.shape)
                raise ValueError(
                    f"{path}: z{i} is {got}; this model needs [{len(names)}, "
                    f"{', '.join(map(str, shape))}] (latent shapes {[list(s) for s in latent_shapes]})")
            levels.append(z.astype(np.float32))
        extra = [k for k in files if k.startswith("z") and k[1:].isdigit()
                 and int(k[1:]) >= len(latent_shapes)]
        if extra:
            raise ValueError(f"{path}: has latents {sorted(extra)} beyond the model's "
                             f"{len(latent_shapes)} levels: directions of another model")
    return [Direction(n, k, i, tuple(z[j] for z in levels))
            for j, (n, k, i) in enumerate(zip(names, kinds, indices))]


def load_directions(paths, latent_shapes):
    """[Direction] from npz files (this module's or evaluate.py's format), checked against
    the model's latent shapes; a repeated name gets a suffix. ValueError naming the file."""
    out, seen = [], set()
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        try:
            loaded = _load_one(path, latent_shapes)
        except (OSError, KeyError, EOFError) as e:  # a damaged archive member
            raise ValueError(f"{path}: not a directions .npz ({type(e).__name__}: {e})") from None
        for d in loaded:
            name, k = d.name, 2
            while name in seen:
                name, k = f"{d.name} ({k})", k + 1
            seen.add(name)
            out.append(dataclasses.replace(d, name=name))
    return out


# ------------------------------------------------------------------------------- command line


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tfglow.demo.directions",
                                description="All attribute / class directions of a data set "
                                            "for the demo's sliders, through an exported model.")
    p.add_argument("--model", required=True, help="SavedModel directory (evaluate.py --export)")
    p.add_argument("--data_dir", required=True, help="data_prep directory, or 'digits'")
    p.add_argument("--out", required=True, help=".npz to write")
    p.add_argument("--split", default="train", help="Split the directions are computed on")
    p.add_argument("--n_images", type=int, default=-1, help="Images to use (-1: the whole split)")
    p.add_argument("--batch_size", type=int, default=64)
    return p


def run(args):
    """Computes and writes the directions; returns [Direction]. ValueError naming the flag."""
    from tfglow.data import DataError, dataset_info, make_dataset
    from tfglow.demo.model import ExportedGlow

    if not args.out.endswith(".npz"):
        raise ValueError(f"--out must name a .npz file, got {args.out!r}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    try:
        model = ExportedGlow.load(args.model)
    except ValueError as e:
        raise ValueError(f"--model {e}") from None
    try:
        info = dataset_info(args.data_dir, args.split, model.image_size)
    except (DataError, OSError) as e:
        raise ValueError(f"--data_dir {args.data_dir}: {e}") from None
    if info.channels != model.channels:
        raise ValueError(f"--data_dir {args.data_dir}: images have {info.channels} channels, "
                         f"the model {model.channels}")
    attributes = dataset_attributes(info)
    if not attributes:
        raise ValueError(f"--data_dir {args.data_dir}: no attributes and fewer than two classes; "
                         "nothing to compute directions of")
    batches = make_dataset(args.data_dir, args.split, model.image_size, args.batch_size,
                           shuffle=False, repeat=False, drop_remainder=False,
                           with_attr=bool(info.n_attr))
    if args.n_images >= 0:
        batches = batches.unbatch().take(args.n_images).batch(args.batch_size)
    encode = (lambda x, y: model.encode(x, y)) if model.ycond else (lambda x, y: model.encode(x))
    directions, n_with, n_without = compute_directions(
        encode, model.latent_shapes, (tuple(t.numpy() for t in b) for b in batches), attributes)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_directions(args.out, directions, n_with=n_with, n_without=n_without, split=args.split,
                    data_dir=str(args.data_dir))
    print(f"wrote {args.out}: {len(directions)} directions "
          f"({', '.join(d.name for d in directions[:12])}{', ...' if len(directions) > 12 else ''}) "
          f"from {int(n_with[0] + n_without[0])} {args.split} images")
    return directions


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"tfglow.demo.directions: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
