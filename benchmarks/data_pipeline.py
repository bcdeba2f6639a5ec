"""Throughput of tfglow.data.make_dataset on CIFAR-sized records (images/s).

Writes synthetic 32x32x3 records in the release format with data_prep's writer (or reads an
existing --data_dir), then times batches of make_dataset for each augmentation level.
Prints one JSON line per configuration and a table; writes all results plus machine info to
--out (default benchmarks/results/data_pipeline.json).

    python benchmarks/data_pipeline.py [--dal 0 1 2] [--batch_size 64] [--batches 300]
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import machine_info, peak_rss_mb, write_json  # noqa: E402
from tfglow.data import make_dataset  # noqa: E402


def synthetic_cifar(out_dir, n_images, resolution, shards, seed=0):
    """n_images random uint8 images (+ labels 0..9) written as Glow TFRecords in out_dir."""
    from data_prep.source import DatasetSource, array_split
    from data_prep.writer import WriteConfig, prepare

    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, size=(n_images, resolution, resolution, 3)).astype(np.uint8)
    y = rng.randint(0, 10, size=n_images)
    n_val = max(1, n_images // 10)
    source = DatasetSource("synthetic-cifar", "synthetic",
                           {"train": array_split(x[n_val:], y[n_val:], "synthetic:train"),
                            "validation": array_split(x[:n_val], y[:n_val], "synthetic:val")},
                           channels=3, num_classes=10, image_shape=(resolution, resolution, 3))
    prepare(source, out_dir, WriteConfig(shards=shards, quiet=True),
            {"benchmark": True, "n": n_images, "res": resolution, "shards": shards, "seed": seed})
    return out_dir


def time_pipeline(data_dir, resolution, batch_size, dal, batches, warmup, shards):
    """images/s over `batches` batches after `warmup` batches (the stream repeats forever)."""
    ds = make_dataset(data_dir, "train", resolution, batch_size, dal=dal, seed=0,
                      shard=(shards, 0), repeat=True, shuffle=True)
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    checksum = 0
    for _ in range(batches):
        x, _ = next(it)
        checksum += int(x.shape[0])  # touch the batch; tensors are already materialised
    dt = time.perf_counter() - t0
    return {"images_per_s": round(checksum / dt, 1), "batches": batches, "seconds": round(dt, 3),
            "peak_memory_mb": round(peak_rss_mb(), 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", help="existing prepared directory (default: synthetic records)")
    p.add_argument("--n_images", type=int, default=20000, help="synthetic records to write")
    p.add_argument("--shards", type=int, default=8, help="synthetic train shards")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--dal", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--step_rate", type=float, default=None,
                   help="training steps/s to compare against (reported as needed images/s)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "data_pipeline.json"))
    args = p.parse_args(argv)

    tmp = None
    data_dir = args.data_dir
    t0 = time.perf_counter()
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tfglow-bench-")
        data_dir = synthetic_cifar(os.path.join(tmp.name, "cifar"), args.n_images,
                                   args.resolution, args.shards)
    prep_seconds = time.perf_counter() - t0
    results = []
    for dal in args.dal:
        r = {"benchmark": "data_pipeline", "dal": dal, "batch_size": args.batch_size,
             "resolution": args.resolution, "workers": 1,
             **time_pipeline(data_dir, args.resolution, args.batch_size, dal, args.batches,
                             args.warmup, 1)}
        if args.step_rate:
            r["training_images_per_s"] = round(args.step_rate * args.batch_size, 1)
            r["headroom"] = round(r["images_per_s"] / r["training_images_per_s"], 2)
        print(json.dumps(r), flush=True)
        results.append(r)
    print()
    print(f"| dal | batch | res | images/s | batches/s |")
    print(f"|----:|------:|----:|---------:|----------:|")
    for r in results:
        print(f"| {r['dal']} | {r['batch_size']} | {r['resolution']} | {r['images_per_s']:.0f} | "
              f"{r['images_per_s'] / r['batch_size']:.1f} |")
    report = {"machine": machine_info(), "n_images": args.n_images, "shards": args.shards,
              "write_seconds": round(prep_seconds, 2), "data_dir": args.data_dir or "synthetic",
              "results": results,
              "note": "training step rate not measured here; compare images_per_s with "
                      "batch_size x training steps/s (see --step_rate)"}
    write_json(args.out, report)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
