"""Start-up cost: seconds from process start to the end of the first train step, and the
trace + first-call time of evaluation's bits/dim, of sampling and of SavedModel export.

    python benchmarks/startup.py [--widths 512 128] [--xla both|on|off] [--repeats 1]
        [--trees NAME=PATH ...] [--batch 16] [--out benchmarks/results/startup.json]
    python benchmarks/startup.py --one --width 128 [--xla] [--skip_extras]   # one process
    python benchmarks/startup.py --model flowpp [--preset cifar10] [--batch 8] ...  # another family

Each measurement is a fresh process (`--one`), so TensorFlow's import, the model's build, the
data-dependent init (eager, as benchmarks/train_step.py), tracing and XLA compilation are all
counted, as a user starting `train.py` waits for them. `--trees` compares source trees (e.g. a
copy of an older commit: `git archive <commit> | tar -x -C /tmp/old`) in one run, alternating
between them for every configuration so that the machine's load affects them alike. Columns:

  first_step_s    process start -> first train step finished (import, build, init, trace,
                  [XLA compile], run), measured against the process start time from /proc;
  trace_step_s    TrainStep construction + first call (tracing, compiling, one step);
  eval_bpd_s      trace + first call of evaluation.compiled_terms (evaluate.py's bits/dim)
                  on one batch (jit_compile with --xla);
  sample_s        trace + first call of a tf.function of model.sample (n = batch);
  export_s        tfglow.export.export_saved_model (traces 5 signatures, writes them);
  step_s          with --steps N: seconds per train step over N more steps (images_per_s).
The cifar10 preset (3 levels x 32 steps) at the given width, batch 16, synthetic images.
`--model flowpp|hierarchical` measures that family's --preset (its own names, e.g. flowpp's
cifar10, the hierarchical model's cpu32) with its train.py optimizer (Adam, beta2 0.999);
--widths apply to Glow only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, command_line, machine_info, peak_rss_mb, write_json  # noqa: E402


def process_age_s():
    """Seconds since this process started (from /proc/self/stat and the boot time)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / ticks


def run_one(args):
    if args.tree:
        sys.path.insert(0, args.tree)
    import numpy as np
    import tensorflow as tf

    import tfglow
    from tfglow import evaluation
    from tfglow.family import get_family
    from tfglow.optim import make_optimizer
    from tfglow.training.distribute import make_runtime
    from tfglow.training.step import TrainStep

    family = get_family(args.model)
    if args.model == "glow":
        cfg = tfglow.GlowConfig.preset(args.preset, width=args.width)
    else:
        cfg = family.config_class(**family.presets[family.preset_prefix + args.preset])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, size=(args.batch,) + cfg.image_shape, dtype=np.uint8))
    conditional = getattr(cfg, "ycond", False)
    y = tf.constant(rng.integers(0, getattr(cfg, "n_y", 1), size=args.batch), tf.int32)
    model = family.build(cfg)
    if args.model == "glow":
        model.initialize(x, y if conditional else None)
        optimizer = make_optimizer("adamax", lr=1e-4, train_its=1000)
    else:
        model.initialize(x)
        optimizer = make_optimizer("adam", lr=1e-4, beta2=0.999, train_its=1000)
    optimizer.build(model.trainable_variables)
    t0 = time.time()
    step = TrainStep(model, optimizer, make_runtime("none"), seed=0, xla=args.xla)
    loss = float(step((x, y), 0)["loss"])
    row = {"model": args.model, "preset": args.preset, "batch": args.batch,
           "width": args.width if args.model == "glow" else None, "xla": args.xla,
           "tree": os.path.dirname(tfglow.__file__),
           "first_step_s": round(process_age_s(), 1), "trace_step_s": round(time.time() - t0, 1),
           "loss": round(loss, 4)}
    if args.steps:
        loss = float(step((x, y), 1)["loss"])  # the second call still warms up
        t0 = time.time()
        for i in range(args.steps):
            loss = float(step((x, y), 2 + i)["loss"])
        row["step_s"] = round((time.time() - t0) / args.steps, 4)
        row["images_per_s"] = round(args.batch / row["step_s"], 3)
        row["last_loss"] = round(loss, 4)
    if not args.skip_extras:
        t0 = time.time()
        if args.xla:
            fn = tf.function(lambda i, l: evaluation.per_image_terms(model, i, l, 0),
                             jit_compile=True)
        else:
            fn = evaluation.compiled_terms(model)
        float(tf.reduce_mean(fn(x, y)["bits_x"]))
        row["eval_bpd_s"] = round(time.time() - t0, 1)
        t0 = time.time()
        sample = tf.function(lambda: model.sample(args.batch, 0.7, y=y if conditional else None,
                                                  seed=0))
        int(tf.reduce_sum(tf.cast(sample(), tf.int32)))
        row["sample_s"] = round(time.time() - t0, 1)
        from tfglow.export import export_saved_model
        with tempfile.TemporaryDirectory() as d:
            t0 = time.time()
            export_saved_model(model, os.path.join(d, "sm"))
            row["export_s"] = round(time.time() - t0, 1)
    row["peak_memory_mb"] = round(peak_rss_mb(), 1)
    return row


def load_now():
    return round(os.getloadavg()[0], 2)


def run_all(args):
    trees = dict(t.split("=", 1) for t in args.trees) if args.trees else {"current": ROOT}
    xlas = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    rows = []
    widths = args.widths if args.model == "glow" else [None]
    for rep in range(args.repeats):
        for width in widths:
            for xla in xlas:
                for name, path in trees.items():
                    cmd = [sys.executable, os.path.abspath(__file__), "--one", "--model",
                           args.model, "--preset", args.preset, "--batch", str(args.batch)]
                    cmd += ["--width", str(width)] if width is not None else []
                    cmd += ["--xla"] if xla else []
                    cmd += ["--skip_extras"] if args.skip_extras else []
                    cmd += ["--steps", str(args.steps)] if args.steps else []
                    cmd += ["--tree", path]
                    load = load_now()
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                    row = json.loads(lines[-1]) if out.returncode == 0 and lines else {
                        "width": width, "xla": xla, "error": (out.stderr or out.stdout)[-800:]}
                    row.update(tree_name=name, repeat=rep, load_before=load, load_after=load_now())
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print_table(rows)
    write_json(args.out, {"command": command_line(), "machine": machine_info(), "rows": rows})
    print(f"wrote {args.out}")


COLUMNS = [("tree_name", 10), ("model", 12), ("width", 6), ("xla", 6), ("first_step_s", 13),
           ("trace_step_s", 13), ("eval_bpd_s", 11), ("sample_s", 9), ("export_s", 9), ("step_s", 7),
           ("peak_memory_mb", 9),
           ("load_before", 6)]


def print_table(rows):
    print("\n" + " ".join(f"{k:>{w}}" for k, w in COLUMNS))
    for r in rows:
        missing = "err" if "error" in r else "-"
        print(" ".join(f"{r.get(k, missing)!s:>{w}}" for k, w in COLUMNS))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--one", action="store_true", help="measure in this process")
    p.add_argument("--model", default="glow", choices=["glow", "flowpp", "hierarchical"])
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--widths", type=int, nargs="+", default=[512, 128])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--xla", nargs="?", const="on", default=None, choices=["both", "on", "off"],
                   help="--one: on|off (bare --xla = on); else both|on|off (default both)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--trees", nargs="*", default=None, help="NAME=PATH source trees to compare")
    p.add_argument("--tree", default=None, help="--one: import tfglow from this source tree")
    p.add_argument("--skip_extras", action="store_true", help="first train step only")
    p.add_argument("--steps", type=int, default=0,
                   help="then time this many more train steps (after a second warm-up step)")
    p.add_argument("--out", default=os.path.join(RESULTS, "startup.json"))
    args = p.parse_args()
    if args.one:
        if args.xla == "both":
            p.error("--xla both measures two processes; with --one give --xla on or off")
        args.xla = args.xla == "on"
        print(json.dumps(run_one(args)), flush=True)
    else:
        args.xla = args.xla or "both"
        run_all(args)


if __name__ == "__main__":
    main()
