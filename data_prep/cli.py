"""Command line: `python -m data_prep <dataset> --source PATH --out DIR [options]`
and `python -m data_prep verify DIR`."""
import argparse
import importlib
import json
import os
import sys

#: dataset -> (converter module, default number of train shards; the original's where it had one)
DATASETS = {
    "cifar10": ("data_prep.cifar10", 16),
    "mnist": ("data_prep.mnist", 16),
    "celeba": ("data_prep.celeba", 120),
    "imagenet_oord": ("data_prep.imagenet_oord", 2000),
    "lsun": ("data_prep.lsun", 2560),
    "images": ("data_prep.images", 16),
    "digits": ("data_prep.digits", 2),
    "tfds:<name>": ("data_prep.tfds_source", 16),
}


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Convert a dataset into the original Glow release's TFRecords "
                    "(<out>/<split>/<split>-rXX-s-SSSS-of-NNNN.tfrecords + dataset.json). "
                    "`python -m data_prep verify DIR` checks a prepared directory.")
    p.add_argument("dataset", help="one of: " + ", ".join(DATASETS))
    p.add_argument("--source", help="the dataset's files (see each converter); tfds: data dir")
    p.add_argument("--out", required=True, help="output data_dir")
    p.add_argument("--resolution", type=int, nargs="+", default=[],
                   help="output size(s), powers of two (default: the images' own size)")
    p.add_argument("--min_resolution", type=int, default=0,
                   help="also write every smaller power of two down to this (2x2 box downsampling)")
    p.add_argument("--n_bits_x", type=int, default=8, choices=(8, 5),
                   help="5: store floor(x / 8) (0..31) and record n_bits_x 5")
    p.add_argument("--shards", type=int, default=0, help="train shards (default per dataset)")
    p.add_argument("--val_shards", type=int, default=0,
                   help="validation shards (default: proportional to the split sizes)")
    p.add_argument("--val_fraction", type=float, default=None,
                   help="validation fraction for sources without a split (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the write order")
    p.add_argument("--overwrite", action="store_true", help="replace a finished data set in --out")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("dataset-specific")
    g.add_argument("--attr", help="celeba: attribute file (list_attr_celeba.txt layout)")
    g.add_argument("--image_list", help="celeba: CelebA-HQ image_list.txt (HQ index -> CelebA file)")
    g.add_argument("--realnvp", action="store_true",
                   help="lsun: RealNVP protocol (short side 96; random 64 crops when training)")
    g.add_argument("--resize", choices=("none", "crop", "pad"), default="none",
                   help="images/celeba/imagenet png/tfds: 'crop' = centre crop + Lanczos resize "
                        "to --resolution; 'pad' = zero-pad to --resolution or the next power of 2")
    g.add_argument("--labels", choices=("auto", "subdirs", "none"), default="auto",
                   help="images: class sub-folders as labels")
    g.add_argument("--channels", type=int, choices=(1, 3), default=3, help="images: 1 = greyscale")
    return p


def _source_identity(path):
    if not path or not os.path.exists(path):
        return None
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def open_source(dataset, opts):
    if dataset.startswith("tfds:"):
        from data_prep import tfds_source
        return tfds_source.open_source(dataset[len("tfds:"):], opts)
    if dataset not in DATASETS:
        from tfglow.data.errors import DataError
        raise DataError(None, f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    return importlib.import_module(DATASETS[dataset][0]).open_source(opts)


def run(args):
    from data_prep.source import SourceOptions
    from data_prep.writer import WriteConfig, prepare

    key = "tfds:<name>" if args.dataset.startswith("tfds:") else args.dataset
    default_shards = DATASETS.get(key, (None, 16))[1]
    opts = SourceOptions(source=args.source, val_fraction=args.val_fraction, seed=args.seed,
                         resolution=max(args.resolution) if args.resolution else None,
                         attr=args.attr, image_list=args.image_list, realnvp=args.realnvp,
                         resize=args.resize, labels=args.labels, channels=args.channels)
    config = WriteConfig(resolutions=tuple(args.resolution), min_resolution=args.min_resolution,
                         n_bits_x=args.n_bits_x, shards=args.shards or default_shards,
                         val_shards=args.val_shards, overwrite=args.overwrite, quiet=args.quiet)
    options = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite", "quiet")}
    options["source"] = _source_identity(args.source)
    options["shards"] = config.shards
    options["format_version"] = 1
    source = open_source(args.dataset, opts)
    manifest = prepare(source, args.out, config, options)
    summary = {"out": args.out, "name": manifest["name"], "resolutions": manifest["resolutions"],
               "n_bits_x": manifest["n_bits_x"],
               "counts": {k: v["count"] for k, v in manifest["splits"].items()}}
    print(json.dumps(summary))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    from tfglow.data.errors import DataError

    try:
        if argv and argv[0] == "verify":
            vp = argparse.ArgumentParser(prog="python -m data_prep verify",
                                         description="Check every shard's sha256 and record count "
                                                     "against dataset.json.")
            vp.add_argument("data_dir")
            from tfglow.data.manifest import verify_dataset
            totals = verify_dataset(vp.parse_args(argv[1:]).data_dir)
            print(json.dumps({"ok": True, **totals}))
            return 0
        return run(build_parser().parse_args(argv))
    except DataError as e:
        print(f"data_prep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("data_prep: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
