"""Train-step throughput and peak memory of the trainer's real compiled step on synthetic data.

    python benchmarks/train_step.py --preset cifar10 --batch 16 --steps 5 [--width N] [--xla]
                                    [--gradient_checkpointing 0|1|2] [--depth K]
    python benchmarks/train_step.py --suite [--out benchmarks/results/train_step.json]

One configuration prints one JSON line: images_per_s (timed steps after two warm-up steps,
which include tracing), step_s, peak_memory_mb (the process's peak RSS, which includes
TensorFlow's own ~0.5 GB: compare configurations, not absolute values) and
baseline_memory_mb (RSS before the model is built). --suite runs a table of configurations,
each in a fresh subprocess so peaks do not mix, prints it and writes JSON with machine info.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(args):
    baseline = peak_rss_mb()
    import numpy as np
    import tensorflow as tf

    import tfglow
    from tfglow.optim import make_optimizer
    from tfglow.training.distribute import make_runtime
    from tfglow.training.step import TrainStep

    overrides = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v}
    cfg = tfglow.GlowConfig.preset(args.preset, **overrides)
    rt = make_runtime("none")
    model = tfglow.Glow(cfg, **_mode_kwargs(tfglow.Glow, args.gradient_checkpointing))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, size=(args.batch,) + cfg.image_shape, dtype=np.uint8))
    y = tf.constant(rng.integers(0, cfg.n_y, size=args.batch), tf.int32)
    model.initialize(x, y if cfg.ycond else None)
    optimizer = make_optimizer("adamax", lr=1e-4, train_its=1000)
    optimizer.build(model.trainable_variables)
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
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    return {"preset": args.preset, "width": cfg.width, "depth": cfg.depth, "batch": args.batch,
            "xla": args.xla, "gradient_checkpointing": args.gradient_checkpointing,
            "params_m": round(n_params / 1e6, 2), "steps": args.steps,
            "step_s": round(elapsed / args.steps, 4),
            "images_per_s": round(args.batch * args.steps / elapsed, 2),
            "warmup_s": round(warmup_s, 1), "loss": round(loss, 4),
            "peak_memory_mb": round(peak_rss_mb(), 1), "baseline_memory_mb": round(baseline, 1)}


def _mode_kwargs(glow_cls, mode):
    import inspect
    if "gradient_checkpointing" in inspect.signature(glow_cls.__init__).parameters:
        return {"gradient_checkpointing": mode}
    if mode:
        raise SystemExit("this tfglow has no gradient_checkpointing option")
    return {}


def machine_info():
    import tensorflow as tf
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gpus": len(tf.config.list_physical_devices("GPU"))}


SUITE = [
    dict(preset="cifar10", batch=16, steps=2, width=None, xla=False, gradient_checkpointing=0),
    dict(preset="cifar10", batch=16, steps=2, width=None, xla=False, gradient_checkpointing=1),
    dict(preset="cifar10", batch=16, steps=3, width=128, xla=False, gradient_checkpointing=0),
    dict(preset="cifar10", batch=16, steps=3, width=128, xla=False, gradient_checkpointing=1),
    dict(preset="cifar10", batch=16, steps=3, width=128, xla=False, gradient_checkpointing=2),
    dict(preset="cifar10", batch=16, steps=3, width=128, xla=True, gradient_checkpointing=0),
]


def run_suite(args):
    rows = []
    for conf in SUITE:
        cmd = [sys.executable, os.path.abspath(__file__), "--preset", conf["preset"],
               "--batch", str(conf["batch"]), "--steps", str(conf["steps"]),
               "--gradient_checkpointing", str(conf["gradient_checkpointing"])]
        if conf["width"]:
            cmd += ["--width", str(conf["width"])]
        if conf["xla"]:
            cmd += ["--xla"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        row = json.loads(lines[-1]) if out.returncode == 0 and lines else {
            **conf, "error": (out.stderr or out.stdout)[-500:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'width':>6} {'xla':>5} {'gc':>3} {'img/s':>8} {'step s':>8} {'peak MB':>8}")
    for r in rows:
        print(f"{r.get('width')!s:>6} {r.get('xla')!s:>5} {r.get('gradient_checkpointing')!s:>3} "
              f"{r.get('images_per_s', 'err')!s:>8} {r.get('step_s', '')!s:>8} "
              f"{r.get('peak_memory_mb', '')!s:>8}")
    result = {"command": " ".join(["python"] + sys.argv), "machine": machine_info(), "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--xla", action="store_true")
    p.add_argument("--gradient_checkpointing", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--suite", action="store_true")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "train_step.json"))
    args = p.parse_args()
    if args.suite:
        run_suite(args)
    else:
        print(json.dumps(run_one(args)), flush=True)


if __name__ == "__main__":
    main()
