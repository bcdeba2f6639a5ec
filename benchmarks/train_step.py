"""Train-step throughput, FLOP rate and peak memory of the trainer's real compiled step.

    python benchmarks/train_step.py --preset cifar10 --batch 16 --steps 5 [--width N] [--xla]
        [--gradient_checkpointing 0|1|2] [--depth K] [--precision float32|mixed_bfloat16]
        [--conv_impl auto|native|matmul] [--device /GPU:0] [--gemm_bound]
    python benchmarks/train_step.py --suite [--out benchmarks/results/train_step.json]

One configuration prints one JSON line:
  images_per_s        timed steps (after two warm-up steps, which include tracing) / time;
  step_s, warmup_s;
  train_gflop_per_image  forward + backward FLOPs per image from the layer shapes
                      (tfglow.flops: 2 per multiply-add of every convolution and matmul);
  achieved_gflops     train_gflop_per_image * images_per_s;
  matmul_peak_gflops  best 2048^3 matmul of this machine in the step's compute dtype,
                      measured in the same process just before the model is built;
  peak_fraction       achieved_gflops / matmul_peak_gflops;
  peak_memory_mb      the process's peak RSS (TensorFlow's own ~0.5 GB included: compare
                      configurations, not absolute values); baseline_memory_mb before TF;
  memory_stages_mb    RSS after importing TensorFlow and tfglow, after the model's init and
                      after the optimizer's build (its slots and Polyak average), to set the
                      peak against its parts.
--gemm_bound also times every matrix product of the step alone (tfglow.flops.train_gemms, each
shape best of 3, in the compute dtype, after the timed steps):
  gemm_bound_step_s   their sum: the step's time if its products ran one after another at
                      their own best speed and nothing else ran;
  gemm_efficiency     gemm_bound_step_s / step_s; gemm_bound_images_per_s = batch / bound;
  gemm_bound_s_by_part  the bound split by layer and pass, summed over levels.
--suite runs a table of configurations, each in a fresh subprocess so peaks do not mix,
prints it and writes JSON with machine info and the command line.
The step is the trainer's TrainStep (dequantisation noise, forward, backward, the original's
Adamax update and the Polyak average) on synthetic uint8 images, without the data pipeline.
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (RESULTS, best_seconds, command_line, machine_info,  # noqa: E402
                               matmul_peak_gflops, peak_rss_mb, proc_status_mb, write_json)


def time_gemm(gemm, dtype, repeats=3, target_s=0.05):
    """Best-of-`repeats` seconds of one flops.Gemm product (one of its `count`) in `dtype`,
    from a traced chain of products that each wait for the one before (control dependencies,
    so per-op overhead counts as in a step, and no two run at once)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([gemm.k, gemm.m] if gemm.transpose_a else [gemm.m, gemm.k]),
                dtype)
    b = tf.cast(tf.random.normal([gemm.n, gemm.k] if gemm.transpose_b else [gemm.k, gemm.n]),
                dtype)
    chain = max(1, min(200, int(target_s * 2e11 / (2 * gemm.m * gemm.k * gemm.n))))

    @tf.function
    def run(a, b):
        last = tf.zeros([], dtype)
        for _ in range(chain):
            with tf.control_dependencies([last]):
                last = tf.matmul(a, b, transpose_a=gemm.transpose_a,
                                 transpose_b=gemm.transpose_b)[0, 0]
        return last

    return best_seconds(lambda: run(a, b).numpy(), repeats) / chain


def gemm_bound(cfg, batch, dtype):
    """(seconds, {part: seconds}) of the step's products timed alone (module docstring)."""
    from tfglow.flops import train_gemms
    from tfglow.grappler import graph_optimizer

    seconds, by_part, cache = 0.0, {}, {}
    with graph_optimizer(False):  # Grappler would merge the chain's identical products
        for g in train_gemms(cfg, batch):
            key = (g.m, g.k, g.n, g.transpose_a, g.transpose_b)
            if key not in cache:
                cache[key] = time_gemm(g, dtype)
            part = g.part.split(" ", 2)[2]  # without "level i"
            by_part[part] = by_part.get(part, 0.0) + g.count * cache[key]
            seconds += g.count * cache[key]
    return seconds, {k: round(v, 4) for k, v in by_part.items()}


def run_one(args):
    baseline = peak_rss_mb()
    import contextlib

    import numpy as np
    import tensorflow as tf

    import tfglow
    from tfglow import conv
    from tfglow.flops import count_flops
    from tfglow.optim import make_optimizer
    from tfglow.training.distribute import make_runtime
    from tfglow.training.step import TrainStep

    stages = {"import": proc_status_mb("VmRSS")["VmRSS"]}
    conv.set_conv_impl(args.conv_impl)
    if args.gemm_bound and conv.conv_impl() == "native":
        raise SystemExit("--gemm_bound times tfglow.conv's matmul forms; this run's convolutions "
                         "are native (--conv_impl native, or a GPU)")
    overrides = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v}
    cfg = tfglow.GlowConfig.preset(args.preset, **overrides)
    compute_dtype = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
    with tf.device(args.device) if args.device else contextlib.nullcontext():
        peak = matmul_peak_gflops(compute_dtype)
        rt = make_runtime("none")
        model = tfglow.Glow(cfg, **_model_kwargs(tfglow.Glow, args))
        rng = np.random.default_rng(0)
        x = tf.constant(rng.integers(0, 256, size=(args.batch,) + cfg.image_shape, dtype=np.uint8))
        y = tf.constant(rng.integers(0, cfg.n_y, size=args.batch), tf.int32)
        model.initialize(x, y if cfg.ycond else None)
        stages["model"] = proc_status_mb("VmRSS")["VmRSS"]
        optimizer = make_optimizer("adamax", lr=1e-4, train_its=1000)
        optimizer.build(model.trainable_variables)
        stages["optimizer"] = proc_status_mb("VmRSS")["VmRSS"]
        step = TrainStep(model, optimizer, rt, seed=0, xla=args.xla)
        t0 = time.time()
        for i in range(2):
            stats = step((x, y), i)
        float(stats["loss"])
        warmup_s = time.time() - t0
        t0 = time.time()
        for i in range(args.steps):
            stats = step((x, y), 2 + i)
        loss = float(stats["loss"])
        elapsed = time.time() - t0
        peak_memory = peak_rss_mb()
        bound = gemm_bound(cfg, args.batch, compute_dtype) if args.gemm_bound else None
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    images_per_s = args.batch * args.steps / elapsed
    gflop = count_flops(cfg).train_step / 1e9
    return {"preset": args.preset, "width": cfg.width, "depth": cfg.depth, "batch": args.batch,
            "xla": args.xla, "gradient_checkpointing": args.gradient_checkpointing,
            "precision": args.precision, "conv_impl": conv.conv_impl(),
            "device": args.device or "default",
            "params_m": round(n_params / 1e6, 2), "steps": args.steps,
            "step_s": round(elapsed / args.steps, 4), "images_per_s": round(images_per_s, 2),
            "train_gflop_per_image": round(gflop, 2),
            "achieved_gflops": round(gflop * images_per_s, 1),
            "matmul_peak_gflops": round(peak, 1),
            "peak_fraction": round(gflop * images_per_s / peak, 3),
            "warmup_s": round(warmup_s, 1), "loss": round(loss, 4),
            "peak_memory_mb": round(peak_memory, 1), "baseline_memory_mb": round(baseline, 1),
            "memory_stages_mb": {k: round(v, 1) for k, v in stages.items()},
            **(_bound_fields(bound, elapsed / args.steps, args.batch) if bound else {})}


def _bound_fields(bound, step_s, batch):
    seconds, by_part = bound
    return {"gemm_bound_step_s": round(seconds, 4),
            "gemm_bound_images_per_s": round(batch / seconds, 2),
            "gemm_efficiency": round(seconds / step_s, 3), "gemm_bound_s_by_part": by_part}


def _model_kwargs(glow_cls, args):
    """Glow() options of this run that the installed tfglow has (older trees lack some)."""
    import inspect
    params = inspect.signature(glow_cls.__init__).parameters
    wanted = {"gradient_checkpointing": (args.gradient_checkpointing, 0),
              "precision": (args.precision, "float32")}
    kwargs = {}
    for name, (value, default) in wanted.items():
        if name in params:
            kwargs[name] = value
        elif value != default:
            raise SystemExit(f"this tfglow has no {name} option")
    return kwargs


# Extra command-line arguments of each suite row (--preset cifar10 --batch 16 always).
SUITE = [
    ["--steps", "3", "--gemm_bound"],
    ["--steps", "2", "--gradient_checkpointing", "1"],
    ["--steps", "2", "--conv_impl", "native"],
    ["--steps", "5", "--width", "128", "--gemm_bound"],
    ["--steps", "5", "--width", "128", "--gradient_checkpointing", "1"],
    ["--steps", "5", "--width", "128", "--gradient_checkpointing", "2"],
    ["--steps", "5", "--width", "128", "--xla"],
    ["--steps", "5", "--width", "128", "--conv_impl", "native"],
    ["--steps", "3", "--width", "128", "--precision", "mixed_bfloat16"],
]
COLUMNS = [("width", 6), ("gradient_checkpointing", 3), ("xla", 5), ("conv_impl", 7),
           ("precision", 15), ("images_per_s", 7), ("step_s", 7), ("achieved_gflops", 7),
           ("peak_fraction", 6), ("gemm_efficiency", 6), ("peak_memory_mb", 8)]


def run_suite(args):
    rows = []
    for extra in SUITE:
        cmd = [sys.executable, os.path.abspath(__file__), "--preset", "cifar10", "--batch", "16",
               *extra] + (["--device", args.device] if args.device else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        row = json.loads(lines[-1]) if out.returncode == 0 and lines else {
            "args": extra, "error": (out.stderr or out.stdout)[-500:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)
    write_json(args.out, {"command": command_line(), "machine": machine_info(), "rows": rows})
    print(f"wrote {args.out}")


def print_table(rows):
    names = {"gradient_checkpointing": "gc", "images_per_s": "img/s", "achieved_gflops": "GF/s",
             "peak_fraction": "peak", "gemm_efficiency": "/gemm", "peak_memory_mb": "peak MB",
             "conv_impl": "conv"}
    print("\n" + " ".join(f"{names.get(k, k):>{w}}" for k, w in COLUMNS))
    for r in rows:
        missing = "err" if "error" in r else "-"
        print(" ".join(f"{r.get(k, missing)!s:>{w}}" for k, w in COLUMNS))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--xla", action="store_true", help="compile forward + backward with XLA")
    p.add_argument("--gradient_checkpointing", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                   help="compute dtype of the coupling networks")
    p.add_argument("--conv_impl", default="auto", choices=["auto", "native", "matmul"],
                   help="tfglow.conv: auto = native (cuDNN) on GPU, matmul forms on CPU")
    p.add_argument("--device", default=None, help="e.g. /CPU:0 or /GPU:0 (default: TF's choice)")
    p.add_argument("--gemm_bound", action="store_true",
                   help="also time the step's matrix products alone (CPU matmul forms only)")
    p.add_argument("--suite", action="store_true")
    p.add_argument("--out", default=os.path.join(RESULTS, "train_step.json"))
    args = p.parse_args()
    if args.suite:
        run_suite(args)
    else:
        print(json.dumps(run_one(args)), flush=True)


if __name__ == "__main__":
    main()
