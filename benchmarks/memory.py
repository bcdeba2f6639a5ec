"""Peak memory and time of one Glow train step against depth, per gradient mode (tfglow.memory).

For each gradient_checkpointing mode (0 backprop, 1 checkpointing, 2 reversible) and depth K, a
fresh subprocess builds the cifar10 preset (32x32x3, 3 levels, affine coupling, 1x1 convolution,
learned top prior) at depth K and a reduced width (default 128; the paper's 512 does not fit the
time budget of a 2-core CPU), runs the data-dependent init, traces a tf.function computing the
loss and the gradients of all trainable variables for a batch (forward + backward; no optimizer
update, whose memory does not depend on the mode), runs it once to warm up, then times `--steps`
more calls and records memory:

    peak_memory_mb  peak RSS during the timed steps minus the RSS just before them: what one
                    train step allocates on top of the resident process (activations kept for
                    the backward pass, gradients, workspace). This is the number that depends
                    on the mode; it includes the gradients themselves (gradients_mb, 4 bytes
                    per parameter), which grow with K in every mode. The peak is reset with /proc/self/clear_refs (Linux), and glibc
                    is told to return freed tensors to the OS (MALLOC_MMAP_THRESHOLD_), so the
                    RSS follows live tensors; CPU TensorFlow has no allocator statistics
                    (tf.config.experimental.get_memory_info raises for CPU:0).
    peak_rss_mb     the absolute peak RSS during the timed steps (process + step).
    max_rss_mb      ru_maxrss of the whole subprocess, including tracing and graph optimisation,
                    which grow with the size of the graph (K) in every mode.

Prints a table and one JSON line per configuration; writes all results plus machine info and
the command line to --out (default benchmarks/results/memory.json).

    python benchmarks/memory.py [--depths 4 8 16 32] [--modes 0 1 2] [--width 128] [--batch 16]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MARK = "RESULT "

from benchmarks.common import machine_info, proc_status_mb, write_json  # noqa: E402


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed_steps(call, steps):
    """Times `steps` calls call(i) -> loss after a warm-up call(-1), measuring the step memory.

    Returns {"first_call_s" (warm-up, tracing included), "elapsed_s" (the timed calls),
    "first_loss" (the warm-up's), "loss" (the last), "rss_before_mb", "peak_rss_mb" (VmHWM over the timed calls), "step_memory_mb"
    (peak minus before; None where VmHWM cannot be reset)}."""
    t0 = time.perf_counter()
    first_loss = call(-1)
    first = time.perf_counter() - t0
    rss_before = proc_status_mb("VmRSS")["VmRSS"]
    was_reset = reset_peak_rss()
    start = time.perf_counter()
    for i in range(steps):
        loss = call(i)
    elapsed = time.perf_counter() - start
    peak = proc_status_mb("VmHWM")["VmHWM"]
    return {"first_call_s": first, "elapsed_s": elapsed, "first_loss": first_loss, "loss": loss,
            "rss_before_mb": rss_before, "peak_rss_mb": peak,
            "step_memory_mb": round(peak - rss_before, 1) if was_reset else None}


def timed_train_steps(model, x, optimizer, steps, clip_norm=0.0):
    """timed_steps of a compiled train step of a model family (loss_terms(training=True)'s
    mean loss, its gradients, clipped at a global norm if clip_norm, the optimizer's update) on
    the uint8 batch x; the warm-up call uses seed [0, 0], timed call i seed [1, i]."""
    import tensorflow as tf

    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(autograph=False)
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, seed=seed, training=True)["loss"])
        grads = tape.gradient(loss, variables)
        if clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return timed_steps(lambda i: float(step(tf.constant([0, 0] if i < 0 else [1, i]))), steps)


def worker(args):
    """Runs in the subprocess: one (mode, depth) measurement; prints MARK + JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    import numpy as np
    import tensorflow as tf

    import tfglow

    t0 = time.perf_counter()
    cfg = tfglow.GlowConfig.preset(args.preset, depth=args.depth, width=args.width)
    model = tfglow.Glow(cfg, gradient_checkpointing=args.mode)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (args.batch,) + cfg.image_shape, dtype=np.uint8))
    noise = tf.constant(rng.uniform(size=(args.batch,) + cfg.image_shape).astype(np.float32))
    model.initialize(x)
    variables = model.trainable_variables

    @tf.function(autograph=False)
    def train_step(x, noise):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, noise=noise)["loss"])
        return loss, tape.gradient(loss, variables)

    t1 = time.perf_counter()
    loss, _ = train_step(x, noise)           # trace, optimise and run once
    t2 = time.perf_counter()
    rss_before = proc_status_mb("VmRSS")["VmRSS"]
    was_reset = reset_peak_rss()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss, grads = train_step(x, noise)
        float(loss)                          # wait for the step
        times.append(time.perf_counter() - start)
    peak = proc_status_mb("VmHWM")["VmHWM"]
    n_params = int(sum(np.prod(v.shape) for v in variables))
    step_s = float(np.median(times))
    result = {
        "benchmark": "memory", "mode": args.mode, "depth": args.depth, "width": args.width,
        "batch": args.batch, "preset": args.preset, "image_shape": list(cfg.image_shape),
        "n_levels": cfg.n_levels,
        "n_params": n_params,
        "gradients_mb": round(4 * n_params / 2**20, 1),
        "peak_memory_mb": round(peak - rss_before, 1) if was_reset else None,
        "peak_rss_mb": round(peak, 1), "rss_before_step_mb": round(rss_before, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "step_s": round(step_s, 3), "images_per_s": round(args.batch / step_s, 2),
        "build_and_init_s": round(t1 - t0, 1), "first_call_s": round(t2 - t1, 1),
        "loss": round(float(loss), 6),
    }
    print(MARK + json.dumps(result), flush=True)


def run_one(args, mode, depth):
    """One measurement in a fresh subprocess; returns its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", str(mode),
           "--depth", str(depth), "--width", str(args.width), "--batch", str(args.batch),
           "--steps", str(args.steps), "--preset", args.preset]
    # A fixed mmap threshold makes glibc return every freed tensor buffer to the OS, so that
    # the RSS follows the live tensors (the default adapts and keeps freed buffers).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def table(results):
    head = (f"{'mode':>4} {'depth':>5} {'step MB':>8} {'grads MB':>8} {'peak RSS':>9} "
            f"{'max RSS':>8} {'step s':>7} {'img/s':>7}")
    rows = [head, "-" * len(head)]
    for r in sorted(results, key=lambda r: (r["mode"], r["depth"])):
        rows.append(f"{r['mode']:>4} {r['depth']:>5} {r['peak_memory_mb']:>8} "
                    f"{r['gradients_mb']:>8} {r['peak_rss_mb']:>9} {r['max_rss_mb']:>8} {r['step_s']:>7} "
                    f"{r['images_per_s']:>7}")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--modes", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--width", type=int, default=128, help="coupling width (paper: 512)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up call")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "memory.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", type=int, help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    start = time.perf_counter()
    results = []
    for depth in args.depths:
        for mode in args.modes:
            r = run_one(args, mode, depth)
            print(json.dumps(r), flush=True)
            results.append(r)
    print(table(results))
    report = {
        "benchmark": "memory",
        "command": " ".join([os.path.relpath(sys.executable, ROOT)
                             if sys.executable.startswith(ROOT) else sys.executable]
                            + [os.path.relpath(os.path.abspath(__file__), ROOT)]
                            + (argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(),
        "settings": {"preset": args.preset, "width": args.width, "batch": args.batch,
                     "timed_steps": args.steps,
                     "note": "width reduced from the paper's 512 to fit a 2-core CPU; one "
                             "train step = loss + gradients of all trainable variables in a "
                             "tf.function (no optimizer update)"},
        "fields": {"peak_memory_mb": "peak RSS during a train step minus RSS before it",
                   "gradients_mb": "4 bytes x n_params: the gradients, part of peak_memory_mb",
                   "peak_rss_mb": "absolute peak RSS during the timed steps",
                   "max_rss_mb": "ru_maxrss of the subprocess, tracing included",
                   "step_s": "median seconds per train step",
                   "images_per_s": "batch / step_s"},
        "total_s": round(time.perf_counter() - start, 1),
        "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out} ({report['total_s']} s)")


if __name__ == "__main__":
    main()
