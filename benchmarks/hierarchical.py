"""The hierarchical model beside Glow at the same resolution: train-step throughput and step
memory with and without gradient checkpointing, and sampling time.

    python benchmarks/hierarchical.py [--rows hier32 glow32 hier256 glow256] [--steps N]
        [--quick] [--out benchmarks/results/hierarchical.json]

Rows (model, preset, batch):
  hier32   HierarchicalFlow "cpu32"        32x32    batch 4
  glow32   Glow "cifar10" (width 512, 3 x 32 steps)   32x32    batch 4
  hier256  HierarchicalFlow "celebahq256" (the paper's Config A, 77M parameters)   batch 2
  glow256  Glow "celeba" (6 x 32 steps, width 512, 5-bit)                         batch 2
The 256 px rows use batch 2, not 1: the hierarchical model's encoder-noise scale is a
minibatch statistic (eq. 11) and needs >= 2 images, and Glow gets the same batch so that the
memory figures compare. `--rows glow256:1` sets a row's batch.

Each row runs fresh subprocesses (so memory peaks are not shared), with random weights after
the data-dependent init on the row's synthetic uint8 batch. Train step, with gradient
checkpointing off (hierarchical False, Glow mode 0) and on (True / mode 1): a compiled
loss_terms(training=True)["loss"] mean, its gradients and an Adam update (lr 1e-6); one
warm-up call (tracing), then the timed calls.
  timing worker (oneDNN kernels, as `import tfglow` selects): --steps timed calls (default 4
    at 32 px, 2 at 256 px)
    images_per_s    batch * steps / their time;  step_s;  first_call_s (tracing included)
    max_rss_mb      the process's peak RSS. With oneDNN, TensorFlow's CPU allocator pools
                    large buffers and never returns them, so the RSS after the warm-up call
                    already holds that call's peak: only this whole-process peak (tracing and
                    the model, Adam's slots included) reflects the step there.
  memory worker (TF_ENABLE_ONEDNN_OPTS=0: the plain allocator, whose freed buffers glibc
    returns with MALLOC_MMAP_THRESHOLD_, so the RSS follows the live tensors): one timed call
    step_memory_mb  peak RSS during it minus the RSS just before it (peak reset through
                    /proc/self/clear_refs, as benchmarks/memory.py): activations kept for
                    backprop, gradients, workspace. CPU TensorFlow has no allocator statistics.
Sampling: model.sample(batch, temperature=0.8) compiled; median of --reps calls after a warm-up
(oneDNN on): ms_per_image.
--quick: tiny stand-ins of each row (a smoke test of the script, not a measurement).
The machine may be shared with other jobs: compare rows within one run (ratios), not absolute
times across runs.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MARK = "RESULT "

from benchmarks.common import RESULTS, command_line, machine_info, write_json  # noqa: E402
from benchmarks.memory import timed_train_steps  # noqa: E402

#: name -> (family, preset, batch, default timed steps).
ROWS = {"hier32": ("hierarchical", "cpu32", 4, 4), "glow32": ("glow", "cifar10", 4, 4),
        "hier256": ("hierarchical", "celebahq256", 2, 2), "glow256": ("glow", "celeba", 2, 2)}

_TINY_LEVELS = dict(num_layers=(1,) * 4, splits=("C",) * 4, encoder_channels=(8,) * 4,
                    decoder_channels=(8,) * 4, coupling_channels=(8,) * 4,
                    cond_channels=(4,) * 4, skip_channels=(4,) * 4, end_channels=16,
                    end_layers=(1, 1), end_hidden=(8, 8), end_cond_channels=4,
                    global_channels=8)
#: --quick: config overrides of each row (a few seconds per subprocess).
QUICK = {"hier32": dict(num_layers=(1, 1, 1), splits=("C", "C", "C"), end_layers=(1, 1)),
         "glow32": dict(width=16, depth=1),
         "hier256": _TINY_LEVELS,
         "glow256": dict(width=8, depth=1)}


def build(args):
    """(model, config, uint8 batch, labels or None) of the worker's row, initialised."""
    import numpy as np
    import tensorflow as tf

    family, preset, _, _ = ROWS[args.row]
    overrides = QUICK[args.row] if args.quick else {}
    if family == "hierarchical":
        from tfglow.hierarchical import HierarchicalConfig, HierarchicalFlow
        cfg = HierarchicalConfig.preset(preset, **overrides)
        model = HierarchicalFlow(cfg, gradient_checkpointing=bool(args.checkpoint))
    else:
        import tfglow
        cfg = tfglow.GlowConfig.preset(preset, **overrides)
        model = tfglow.Glow(cfg, gradient_checkpointing=int(args.checkpoint))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (args.batch,) + cfg.image_shape, dtype=np.uint8))
    model.initialize(x)
    return model, cfg, x


def train_worker(args):
    import keras
    import numpy as np

    t0 = time.perf_counter()
    model, cfg, x = build(args)
    variables = model.trainable_variables
    # A small learning rate: the cost of a step does not depend on it, and at 1e-4 Glow's 256 px
    # preset (no warm-up) went to an infinite loss within two steps.
    optimizer = keras.optimizers.Adam(1e-6)
    t1 = time.perf_counter()
    timed = timed_train_steps(model, x, optimizer, args.steps)
    t2 = t1 + timed["first_call_s"]
    elapsed, loss, first_loss = timed["elapsed_s"], timed["loss"], timed["first_loss"]
    max_rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.kind == "memory":
        return {"step_memory_mb": timed["step_memory_mb"],
                "memory_rss_before_mb": round(timed["rss_before_mb"], 1),
                "memory_step_s": round(elapsed / args.steps, 3)}
    return {"kind": "train", "checkpoint": bool(args.checkpoint),
            "params_m": round(sum(int(np.prod(v.shape)) for v in variables) / 1e6, 2),
            "steps": args.steps, "step_s": round(elapsed / args.steps, 3),
            "images_per_s": round(args.batch * args.steps / elapsed, 3), "max_rss_mb": max_rss,
            "build_and_init_s": round(t1 - t0, 1), "first_call_s": round(t2 - t1, 1),
            "first_loss": round(first_loss, 4), "loss": round(loss, 4)}


def sample_worker(args):
    import tensorflow as tf

    model, cfg, _ = build(args)
    sample = tf.function(lambda: model.sample(args.batch, temperature=0.8), autograph=False)
    t0 = time.perf_counter()
    out = sample().numpy()
    first = time.perf_counter() - t0
    assert out.shape == (args.batch,) + cfg.image_shape
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        sample().numpy()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"kind": "sample", "temperature": 0.8, "reps": args.reps,
            "ms_per_batch": round(1000 * med, 1),
            "ms_per_image": round(1000 * med / args.batch, 1),
            "ms_all": [round(1000 * t, 1) for t in times], "first_call_s": round(first, 1)}


def run_worker(args, row, batch, kind, checkpoint=0):
    """One subprocess; its result dict, or {"error": ...}."""
    steps = 1 if kind == "memory" else args.steps or (1 if args.quick else ROWS[row][3])
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--row", row, "--kind", kind,
           "--batch", str(batch), "--checkpoint", str(checkpoint), "--steps", str(steps),
           "--reps", str(args.reps)] + (["--quick"] if args.quick else [])
    # A fixed mmap threshold makes glibc return freed tensor buffers to the OS, so that the
    # RSS follows the live tensors (benchmarks/memory.py); oneDNN's allocator would pool them.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MALLOC_MMAP_THRESHOLD_="65536",
               TF_ENABLE_ONEDNN_OPTS="0" if kind == "memory" else "1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {"error": proc.stderr[-2000:], "wall_s": round(time.perf_counter() - t0, 1)}
    return {**json.loads(lines[-1][len(MARK):]), "wall_s": round(time.perf_counter() - t0, 1)}


def run_row(args, row, batch, kind, checkpoint=0):
    """A table row: a train row merges its timing and memory workers."""
    family, preset = ROWS[row][:2]
    head = {"row": row, "family": family, "preset": preset, "batch": batch, "quick": args.quick,
            "kind": kind, "checkpoint": bool(checkpoint)}
    out = {**head, **run_worker(args, row, batch, kind, checkpoint)}
    if kind == "train" and "error" not in out:
        memory = run_worker(args, row, batch, "memory", checkpoint)
        out.update({("memory_" + k if k in ("error", "wall_s") else k): v
                    for k, v in memory.items()})
    return out


def print_table(rows):
    print(f"\n{'row':>8} {'batch':>5} {'params M':>8} {'ckpt':>5} {'img/s':>8} {'step s':>8} "
          f"{'step MB':>8} {'max RSS':>8} {'sample ms/img':>13}")
    for r in rows:
        if "error" in r:
            print(f"{r['row']:>8} {r['batch']:>5} {r['kind']} failed: "
                  f"{r['error'].strip().splitlines()[-1:]}")
        elif r["kind"] == "train":
            print(f"{r['row']:>8} {r['batch']:>5} {r['params_m']:>8} {r['checkpoint']!s:>5} "
                  f"{r['images_per_s']:>8} {r['step_s']:>8} {r.get('step_memory_mb')!s:>8} "
                  f"{r['max_rss_mb']:>8} {'':>13}")
        else:
            print(f"{r['row']:>8} {r['batch']:>5} {'':>8} {'':>5} {'':>8} {'':>8} {'':>8} "
                  f"{'':>8} {r['ms_per_image']:>13}")


def parse_rows(items):
    """["hier32", "glow256:1", ...] -> [(name, batch)]."""
    out = []
    for item in items:
        name, _, batch = item.partition(":")
        if name not in ROWS:
            raise SystemExit(f"unknown row {name!r}; choose from {sorted(ROWS)}")
        out.append((name, int(batch) if batch else ROWS[name][2]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", nargs="*", default=["hier32", "glow32", "hier256", "glow256"])
    p.add_argument("--steps", type=int, default=None,
                   help="timed train steps per row (default 4 at 32 px, 2 at 256 px)")
    p.add_argument("--reps", type=int, default=3, help="timed sampling calls")
    p.add_argument("--quick", action="store_true", help="tiny stand-ins: a smoke run")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of --out not re-run here")
    p.add_argument("--out", default=os.path.join(RESULTS, "hierarchical.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--row", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="train", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker = sample_worker if args.kind == "sample" else train_worker
        print(MARK + json.dumps(worker(args)), flush=True)
        return
    start = time.perf_counter()
    rows = []
    for name, batch in parse_rows(args.rows):
        for kind, checkpoint in (("train", 0), ("train", 1), ("sample", 0)):
            rows.append(run_row(args, name, batch, kind, checkpoint))
            print(json.dumps(rows[-1]), flush=True)
    if args.append and os.path.exists(args.out):
        done = {(r["row"], r["kind"], r.get("checkpoint")) for r in rows}
        with open(args.out) as f:
            kept = [r for r in json.load(f)["rows"]
                    if (r["row"], r["kind"], r.get("checkpoint")) not in done]
        order = list(ROWS)
        rows = sorted(kept + rows, key=lambda r: order.index(r["row"]))
    print_table(rows)
    report = {
        "benchmark": "hierarchical", "command": command_line(), "machine": machine_info(),
        "total_s": round(time.perf_counter() - start, 1),
        "notes": [
            "The machine was shared with other jobs during the run (2 CPU cores, all "
            "subprocesses under nice): compare rows within this run (ratios checkpoint on/off, "
            "hierarchical/Glow), not absolute times across runs.",
            "Random weights after the data-dependent init, synthetic uint8 images.",
            "256 px rows at batch 2: the hierarchical model's encoder-noise scale is a "
            "minibatch statistic (needs >= 2 images); Glow at the same batch.",
            "step_memory_mb: peak RSS during one step minus the RSS before it, in a worker "
            "with oneDNN off (its allocator pools buffers, so the RSS would not fall between "
            "steps); activations kept for backprop, gradients, Adam's update, workspace. "
            "max_rss_mb: the timing worker's whole-process peak (oneDNN on)."],
        "rows": rows}
    write_json(args.out, report)
    print(f"wrote {args.out} ({report['total_s']} s)")


if __name__ == "__main__":
    main()
