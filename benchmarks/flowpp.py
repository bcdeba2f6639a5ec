"""Flow++ benchmarks: train-step throughput, FLOP rate and step memory; sampling with the two
inverses of the mixture-logistic CDF.

    python benchmarks/flowpp.py [--batch 8] [--steps 3] [--filters 96 48] [--reps 2]
        [--onednn 1 0] [--port_json /path/to/port_figures.json]
        [--out benchmarks/results/flowpp.json]

Train rows (the cifar10 preset, 31.4M parameters, and a width-48 variant with 48 filters in the
flow and the dequantizer; batch 8; gradient checkpointing off and on), each in a fresh
subprocess: a compiled step = variational dequantization, forward, backward with dropout 0.2,
global-norm clipping at 1 and an Adam update, on synthetic uint8 images after the official
data-dependent init. Fields:
  images_per_s          batch * timed steps / their time (after one warm-up call that traces)
  train_gflop_per_image forward + backward FLOPs from the shapes (tfglow.flowpp.flops)
  peak_fraction         achieved FLOP/s / the machine's 2048^3 float32 matmul rate, measured in
                        the same process just before
  step_memory_mb        peak RSS during the timed steps minus the RSS before them (the peak is
                        reset through /proc/self/clear_refs; glibc returns freed buffers,
                        MALLOC_MMAP_THRESHOLD_): activations kept for backprop, gradients, Adam
Every row is run with each --onednn setting (TF_ENABLE_ONEDNN_OPTS of the worker; `import
tfglow` sets 1 unless the environment says otherwise; field "onednn").
Mixture-inverse rows: the inverse of the mixture CDF alone (compiled) on the stage-1 shape
[8, 32, 16, 3] with K = 32 random logistics, error against the float64 root.
Inverse rows (cifar10 preset after the data-dependent init; trained weights would change the
root-finding work): compiled sampling of a batch (z ~ N(0, 1) -> decode -> uint8) with the
official bisection and with Chandrupatla's per-element root finder; median of --reps calls,
and the round-trip error max|decode(encode(x + u)) - (x + u)| in pixel units, of the float32
flow (encode_with_logdet / decode_with_logdet, as training and sampling) and of the exact
`encode` / `decode` (float64), on eight scikit-image photos resized to 32x32.
--port_json merges figures of a port measured by hand beside this run (see the README).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MARK = "RESULT "

from benchmarks.common import (RESULTS, command_line, machine_info,  # noqa: E402
                               matmul_peak_gflops, write_json)
from benchmarks.memory import timed_train_steps  # noqa: E402


def _model(args, **changes):
    import numpy as np
    import tensorflow as tf

    from tfglow.flowpp import FlowPP, FlowPPConfig

    cfg = FlowPPConfig.preset("cifar10", filters=args.filters, dequant_filters=args.filters,
                              **changes)
    model = FlowPP(cfg, gradient_checkpointing=bool(args.checkpoint))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (args.batch,) + cfg.image_shape, dtype=np.uint8))
    t0 = time.perf_counter()
    model.initialize(x)
    return model, x, time.perf_counter() - t0


def train_worker(args):
    import numpy as np
    import keras

    from tfglow.flowpp.flops import count_flops

    peak = matmul_peak_gflops("float32")
    t0 = time.perf_counter()
    model, x, init_s = _model(args)
    variables = model.trainable_variables
    optimizer = keras.optimizers.Adam(3e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    t1 = time.perf_counter()
    timed = timed_train_steps(model, x, optimizer, args.steps, clip_norm=1.0)
    t2 = t1 + timed["first_call_s"]
    elapsed, loss, peak_rss = timed["elapsed_s"], timed["loss"], timed["peak_rss_mb"]
    gflop = count_flops(model.config).train_step / 1e9
    ips = args.batch * args.steps / elapsed
    return {"row": "train", "filters": args.filters, "batch": args.batch,
            "gradient_checkpointing": bool(args.checkpoint),
            "params": int(sum(np.prod(v.shape) for v in variables)), "steps": args.steps,
            "step_s": round(elapsed / args.steps, 3), "images_per_s": round(ips, 3),
            "train_gflop_per_image": round(gflop, 2),
            "achieved_gflops": round(gflop * ips, 1), "matmul_peak_gflops": round(peak, 1),
            "peak_fraction": round(gflop * ips / peak, 3),
            "step_memory_mb": timed["step_memory_mb"],
            "peak_rss_mb": round(peak_rss, 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "build_s": round(t1 - t0 - init_s, 1), "init_s": round(init_s, 1),
            "first_call_s": round(t2 - t1, 1), "loss": round(loss, 4)}


def inverse_worker(args):
    import numpy as np
    import tensorflow as tf

    model, x, _ = _model(args, inverse=args.method)
    x = tf.constant(_photos(model.config.image_size))

    @tf.function(autograph=False)
    def sample(seed):
        z = tf.random.stateless_normal((args.batch,) + model.config.latent_shape, seed)
        return model.postprocess(model.decode_with_logdet(z)[0])

    @tf.function(autograph=False)
    def roundtrip(x):
        xu, _ = model.dequantize(model.preprocess(x), seed=tf.constant([3, 4]))
        z, _ = model.encode_with_logdet(xu)
        exact = model.decode(model.encode(xu))
        return (tf.reduce_max(tf.abs(model.decode_with_logdet(z)[0] - xu)),
                tf.reduce_max(tf.abs(exact - xu)))

    t0 = time.perf_counter()
    sample(tf.constant([0, 0])).numpy()
    first = time.perf_counter() - t0
    times = []
    for i in range(args.reps):
        t0 = time.perf_counter()
        sample(tf.constant([1, i])).numpy()
        times.append(time.perf_counter() - t0)
    err, exact_err = (float(e) for e in roundtrip(x))
    return {"row": "inverse", "method": args.method, "filters": args.filters,
            "batch": args.batch, "sample_s": round(float(np.median(times)), 3),
            "first_call_s": round(first, 1), "roundtrip_max_abs_error": err,
            "exact_roundtrip_max_abs_error": exact_err}


def _photos(size, n=8):
    """n scikit-image sample photos (RGB) resized to size x size, uint8 [n, size, size, 3]."""
    import numpy as np
    import skimage.data
    import skimage.transform

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "cat",
             "retina", "colorwheel"]
    out = [(skimage.transform.resize(getattr(skimage.data, name)()[..., :3], (size, size),
                                     anti_aliasing=True) * 255).astype(np.uint8)
           for name in names[:n]]
    return np.stack(out)


def mixture_worker(args):
    """The inverse alone on cifar10's stage-1 shape [8, 32, 16, 3] with K = 32: compiled time
    (median of reps) and max error against the float64 root, for float32 inputs."""
    import numpy as np
    import tensorflow as tf

    from tfglow.flowpp import mixlogistic

    rng = np.random.default_rng(0)
    shape = (args.batch, 32, 16, 3)
    logits = rng.normal(size=shape + (32,)).astype(np.float32)
    means = rng.normal(size=shape + (32,)).astype(np.float32)
    logscales = np.maximum(rng.normal(-1.0, 1.0, size=shape + (32,)), -7).astype(np.float32)
    x = rng.normal(0.0, 2.0, size=shape).astype(np.float32)
    x[..., 0] *= 8.0                                  # some elements far in the tails
    mix = [tf.constant(t) for t in (logits, means, logscales)]
    target = mixlogistic.logit_cdf(tf.constant(x), *mix)
    invert = tf.function(mixlogistic.INVERSES[args.method], autograph=False)
    invert(target, *mix).numpy()
    times = []
    for _ in range(max(args.reps, 3)):
        t0 = time.perf_counter()
        out = invert(target, *mix).numpy()
        times.append(time.perf_counter() - t0)
    ref = mixlogistic.invert_bisection(tf.cast(target, tf.float64),
                                       *(tf.cast(t, tf.float64) for t in mix)).numpy()
    err = np.abs(out - ref)
    return {"row": "mixture_inverse", "method": args.method, "shape": list(shape),
            "components": 32, "invert_s": round(float(np.median(times)), 4),
            "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "max_abs_error_vs_x": float(np.abs(out - x).max())}


def run_worker(args, extra, onednn):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *extra,
           "--batch", str(args.batch), "--steps", str(args.steps), "--reps", str(args.reps)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MALLOC_MMAP_THRESHOLD_="65536",
               TF_ENABLE_ONEDNN_OPTS=onednn)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {"args": extra, "onednn": onednn, "error": proc.stderr[-2000:]}
    return {**json.loads(lines[-1][len(MARK):]), "onednn": onednn}


def print_table(rows):
    cols = [("filters", 7), ("onednn", 6), ("gradient_checkpointing", 5), ("images_per_s", 8),
            ("step_s", 8), ("train_gflop_per_image", 8), ("achieved_gflops", 8),
            ("peak_fraction", 6), ("step_memory_mb", 9)]
    names = {"gradient_checkpointing": "ckpt", "images_per_s": "img/s",
             "train_gflop_per_image": "GF/img", "achieved_gflops": "GF/s",
             "peak_fraction": "peak", "step_memory_mb": "step MB"}
    print(" ".join(f"{names.get(k, k):>{w}}" for k, w in cols))
    for r in rows:
        if r.get("row") == "train":
            print(" ".join(f"{r.get(k)!s:>{w}}" for k, w in cols))
    print(f"\n{'method':>13} {'onednn':>6} {'sample s':>9} {'float32 rt err':>14} "
          f"{'exact rt err':>12}")
    for r in rows:
        if r.get("row") == "inverse":
            print(f"{r['method']:>13} {r['onednn']:>6} {r['sample_s']:>9} "
                  f"{r['roundtrip_max_abs_error']:>14.3g} "
                  f"{r.get('exact_roundtrip_max_abs_error', float('nan')):>12.3g}")
    print(f"\n{'method':>13} {'invert s':>9} {'max err':>10} {'mean err':>10}")
    for r in rows:
        if r.get("row") == "mixture_inverse":
            print(f"{r['method']:>13} {r['invert_s']:>9} {r['max_abs_error']:>10.3g} "
                  f"{r['mean_abs_error']:>10.3g}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--filters", type=int, nargs="*", default=[96, 48])
    p.add_argument("--checkpoint", type=int, nargs="*", default=[0, 1])
    p.add_argument("--methods", nargs="*", default=["bisection", "chandrupatla"])
    p.add_argument("--mixture_methods", nargs="*", default=["bisection", "chandrupatla"],
                   help="rows timing the mixture inverse alone")
    p.add_argument("--onednn", nargs="*", default=["1"], choices=["0", "1"],
                   help="TF_ENABLE_ONEDNN_OPTS of the workers; each row runs with each")
    p.add_argument("--append", action="store_true", help="add the rows to those in --out")
    p.add_argument("--port_json", default=None)
    p.add_argument("--out", default=os.path.join(RESULTS, "flowpp.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="train", help=argparse.SUPPRESS)
    p.add_argument("--method", default="bisection", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.filters, args.checkpoint = args.filters[0], args.checkpoint[0]
        workers = {"train": train_worker, "inverse": inverse_worker, "mixture": mixture_worker}
        result = workers[args.kind](args)
        print(MARK + json.dumps(result), flush=True)
        return
    start = time.perf_counter()
    rows = []
    jobs = [["--kind", "train", "--filters", str(f), "--checkpoint", str(ck)]
            for f in args.filters for ck in args.checkpoint]
    jobs += [["--kind", "inverse", "--method", method, "--filters",
              str((args.filters or [96])[0]), "--checkpoint", "0"] for method in args.methods]
    jobs += [["--kind", "mixture", "--method", method] for method in args.mixture_methods]
    for job in jobs:
        for onednn in args.onednn:  # settings alternate row by row: same machine state
            rows.append(run_worker(args, job, onednn))
            print(json.dumps(rows[-1]), flush=True)
    if args.append and os.path.exists(args.out):
        with open(args.out) as f:
            rows = json.load(f)["rows"] + rows
    print_table(rows)
    report = {"benchmark": "flowpp", "command": command_line(), "machine": machine_info(),
              "total_s": round(time.perf_counter() - start, 1), "rows": rows}
    if args.port_json:
        with open(args.port_json) as f:
            report["port_comparison"] = json.load(f)
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
