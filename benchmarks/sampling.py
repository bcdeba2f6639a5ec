"""Sampling latency on this machine: decode of eps ~ N(0, T^2) to uint8 images, compiled.

    python benchmarks/sampling.py [--out benchmarks/results/sampling.json] [--reps 3]
        [--celeba_depth_b64 1] [--rows celeba:64 --append]

Rows: the cifar10 preset (32x32, 3 levels x 32 steps, width 512) and the celeba preset
(256x256, 6 levels x 32 steps, width 512, 5-bit), batch 1 and 64. The paper reports 130 ms
for one 256x256 sample on a GTX 1080 Ti (Glow section 6). Weights are the untrained
initialisation (latency does not depend on their values). Each row: one warm-up call (which
traces), then the median of --reps timed calls. Batch 64 of the celeba preset runs with
--celeba_depth_b64 steps per level (default 1 of 32: one full-depth batch of 64 takes ~35 min
on 2 CPU cores, more than this benchmark's budget);
the row says so and gives the full-depth estimate, scaled by 32 / depth (the flow steps are
almost all of the work and each level's steps cost the same).
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfglow  # noqa: E402  (first: it sets TensorFlow's CPU kernels, tfglow/__init__.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchmarks.common import machine_info, peak_rss_mb, write_json  # noqa: E402


def sampler(model, n, temperature=0.7):
    """A compiled () -> uint8 [n, H, W, C]: the whole of sampling (noise, decode, postprocess)."""
    @tf.function
    def sample():
        eps = [tf.random.normal((n,) + s) * temperature for s in model.latent_shapes]
        return model.postprocess(model.decode_with_logdet(eps)[0])
    return sample


def time_row(preset, batch, reps, depth=None):
    overrides = {} if depth is None else {"depth": depth}
    cfg = tfglow.GlowConfig.preset(preset, **overrides)
    t0 = time.perf_counter()
    model = tfglow.Glow(cfg)
    build = time.perf_counter() - t0
    sample = sampler(model, batch)
    t0 = time.perf_counter()
    out = sample().numpy()
    warm = time.perf_counter() - t0
    assert out.shape == (batch, *cfg.image_shape)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sample().numpy()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    full_depth = tfglow.GlowConfig.preset(preset).depth
    row = {"preset": preset, "image_size": cfg.image_size, "n_levels": cfg.n_levels,
           "depth": cfg.depth, "width": cfg.width, "params": int(model.count_params()),
           "batch": batch, "reps": reps, "ms_per_batch": round(1000 * med, 1),
           "ms_per_image": round(1000 * med / batch, 2),
           "images_per_s": round(batch / med, 3), "peak_memory_mb": round(peak_rss_mb(), 1),
           "ms_per_batch_all": [round(1000 * t, 1) for t in times],
           "first_call_s_incl_trace": round(warm, 2), "build_s": round(build, 2)}
    if cfg.depth != full_depth:
        row["note"] = (f"depth reduced {full_depth} -> {cfg.depth} to bound the run time on "
                       f"this CPU; full-depth estimate scales by {full_depth}/{cfg.depth}")
        row["ms_per_batch_full_depth_est"] = round(row["ms_per_batch"] * full_depth / cfg.depth, 1)
        row["ms_per_image_full_depth_est"] = round(row["ms_per_image"] * full_depth / cfg.depth, 2)
    print(json.dumps(row), flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sampling.json"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--celeba_depth_b64", type=int, default=1)
    p.add_argument("--rows", default="cifar10:1,cifar10:64,celeba:1,celeba:64")
    p.add_argument("--append", action="store_true",
                   help="Keep the other rows already in --out (re-run some rows only)")
    args = p.parse_args(argv)
    rows = []
    if args.append and os.path.exists(args.out):
        with open(args.out) as f:
            wanted = {tuple(i.split(":")) for i in args.rows.split(",")}
            rows = [r for r in json.load(f)["results"]
                    if (r["preset"], str(r["batch"])) not in wanted]
    for item in args.rows.split(","):
        preset, batch = item.split(":")
        batch = int(batch)
        depth = args.celeba_depth_b64 if (preset == "celeba" and batch > 1) else None
        rows.append(time_row(preset, batch, args.reps, depth))
        tf.keras.backend.clear_session()
    order = [tuple(i.split(":")) for i in "cifar10:1,cifar10:64,celeba:1,celeba:64".split(",")]
    rows.sort(key=lambda r: order.index((r["preset"], str(r["batch"])))
              if (r["preset"], str(r["batch"])) in order else len(order))
    result = {"benchmark": "sampling", "machine": machine_info(), "temperature": 0.7,
              "paper": "130 ms per 256x256 sample on one GTX 1080 Ti (Glow section 6)",
              "results": rows}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
