"""Glow Table 2 (test bits/dim): the commands that reproduce each row, the time they take, and
the table of finished runs next to the paper's numbers.

    python -m experiments.table2 plan [--gpu_tflops 15.7 --gpu_utilisation 0.4 --gpus 8]
    python -m experiments.table2 measure      # time each row's train step on this machine
    python -m experiments.table2 results runs/table2/*      # finished runs vs the paper

`plan` prints, per row, the data_prep command from the original source files, the single-node
(tf.distribute) and multi-node (Horovod, the original README's mpiexec) train commands, and
the time per epoch: measured on this machine (`measure` writes experiments/results/
table2_timing.json: images/s of the trainer's real step, benchmarks/train_step.py) and
extrapolated to GPUs from FLOPs:

    epoch seconds on G GPUs = images per epoch * training FLOPs per image
                              / (G * peak FLOP/s * utilisation)

with training FLOPs = 4 x the forward count of tfglow.flops (forward, backward = 2 forwards,
and the forward again that the original's default gradient checkpointing recomputes).

An epoch is the original's: n_train = 50,000 "anchor" images, i.e. 50,000 * (32 / size)^2
images of the row's size. Peak and utilisation are stated assumptions (defaults: V100 fp32
15.7 TFLOP/s at 40%), not measurements; the CPU figure is measured.

`results` reads each run's `eval/eval.json` (evaluate.py on the whole test split) or else the
best line of its test.txt, matches it to a row by problem, category and image size (from
hparams.json), and prints run vs paper.
"""
import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TIMING = os.path.join(ROOT, "experiments", "results", "table2_timing.json")

#: The original README's flags for the paper's runs (after the problem and data).
_FLAGS = "--n_level {levels} --depth {depth} --flow_permutation 2 --flow_coupling 1 --seed 0 " \
         "--learntop --lr 0.001 --n_bits_x 8"


@dataclasses.dataclass(frozen=True)
class Row:
    key: str              # runs/table2/<key>
    name: str
    paper: float          # Glow, test bits/dim (Table 2)
    realnvp: float        # RealNVP's figure in the same table
    preset: str           # tfglow.GlowConfig preset = the run's model
    problem: str
    image_size: int
    category: str
    data_prep: str        # from the original source files
    levels: int
    depth: int
    gpus: int = 8         # the original README's mpiexec -n

    @property
    def data_dir(self):
        base = {"cifar10": "data/cifar10", "imagenet-oord": f"data/imagenet{self.image_size}",
                "lsun_realnvp": "data/lsun_realnvp"}[self.problem]
        return base

    def flags(self):
        cat = f" --category {self.category}" if self.category else ""
        return (f"--problem {self.problem}{cat} --data_dir {self.data_dir} --image_size "
                f"{self.image_size} " + _FLAGS.format(levels=self.levels, depth=self.depth))

    def train_single(self):
        return f"python train.py {self.flags()} --logdir runs/table2/{self.key} --restore_if_exists"

    def train_multi(self):
        return (f"mpiexec -n {self.gpus} python train.py {self.flags()} "
                f"--logdir runs/table2/{self.key} --restore_if_exists")

    @property
    def images_per_epoch(self):
        return 50000 * 32 ** 2 // self.image_size ** 2


def _lsun(category, paper, realnvp):
    return Row(f"lsun_{category.split('_')[0]}", f"LSUN {category.split('_')[0]}", paper, realnvp, "lsun", "lsun_realnvp", 64,
               category, f"python -m data_prep lsun --source lsun/{category} "
                         f"--out data/lsun_realnvp/{category} --realnvp", 3, 48)


ROWS = [
    Row("cifar10", "CIFAR-10", 3.35, 3.49, "cifar10", "cifar10", 32, "",
        "python -m data_prep cifar10 --source cifar-10-python.tar.gz --out data/cifar10", 3, 32),
    Row("imagenet32", "ImageNet 32x32", 4.09, 4.28, "imagenet32", "imagenet-oord", 32, "",
        "python -m data_prep imagenet_oord --source imagenet32_npz/ --out data/imagenet32", 3, 48),
    Row("imagenet64", "ImageNet 64x64", 3.81, 3.98, "imagenet64", "imagenet-oord", 64, "",
        "python -m data_prep imagenet_oord --source imagenet64_npz/ --out data/imagenet64", 4, 48),
    _lsun("bedroom", 2.38, 2.72),
    _lsun("tower", 2.46, 2.81),
    _lsun("church_outdoor", 2.67, 3.08),
]

SOURCES = {
    "cifar10": "cifar-10-python.tar.gz (the CIFAR-10 python version)",
    "imagenet-oord": "Imagenet32/64 npz downloads (train_data_batch_1..10.npz + val_data.npz, "
                     "unzipped into one folder per size)",
    "lsun_realnvp": "LSUN <category>_train_lmdb and <category>_val_lmdb, unzipped into one folder",
}


# ------------------------------------------------------------------------------ timing


def training_gflop(preset):
    """GFLOP per training image of a preset with recomputation: 4 x forward (tfglow.flops)."""
    import tfglow
    from tfglow.flops import count_flops

    return 4 * count_flops(tfglow.GlowConfig.preset(preset)).forward / 1e9


def gpu_epoch_seconds(row, gflop, tflops, utilisation, gpus):
    return row.images_per_epoch * gflop / (gpus * tflops * 1e3 * utilisation)


def measure(args):
    """Times each distinct preset's train step on this machine (benchmarks/train_step.py in a
    fresh process) and writes TIMING."""
    from benchmarks.common import machine_info, write_json

    out = {"machine": machine_info(), "command": "python -m experiments.table2 measure",
           "batch": args.batch, "steps": args.steps, "gradient_checkpointing": 1,
           "load_average_before": os.getloadavg(), "presets": {}}
    for preset in dict.fromkeys(r.preset for r in ROWS):
        cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "train_step.py"), "--preset",
               preset, "--batch", str(args.batch), "--steps", str(args.steps),
               "--gradient_checkpointing", "1"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        if proc.returncode != 0:
            sys.exit(f"table2 measure: {preset} failed:\n{proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out["presets"][preset] = {**row, "load_average_after": os.getloadavg()}
        print(f"{preset}: {row['images_per_s']} images/s, {row['train_gflop_per_image']} "
              f"GFLOP/image", flush=True)
        write_json(args.timing, out)
    return out


def plan(args):
    timing = {}
    if os.path.exists(args.timing):
        with open(args.timing) as f:
            timing = json.load(f).get("presets", {})
    print(f"Glow Table 2: {len(ROWS)} rows. GPU estimate: {args.gpus} x {args.gpu_tflops} "
          f"TFLOP/s at {args.gpu_utilisation:.0%} (an assumption); CPU: measured "
          f"({'from ' + os.path.relpath(args.timing, ROOT) if timing else 'run `measure` first'}).\n")
    table = []
    for row in ROWS:
        gflop = training_gflop(row.preset)
        ips = timing.get(row.preset, {}).get("images_per_s")
        cpu_h = row.images_per_epoch / ips / 3600 if ips else None
        gpu_min = gpu_epoch_seconds(row, gflop, args.gpu_tflops, args.gpu_utilisation,
                                    args.gpus) / 60
        table.append({"row": row.name, "target": row.paper, "preset": row.preset,
                      "images_per_epoch": row.images_per_epoch, "train_gflop_per_image": gflop,
                      "cpu_images_per_s": ips, "cpu_hours_per_epoch": cpu_h,
                      "gpu_minutes_per_epoch": gpu_min, "data_prep": row.data_prep,
                      "train_single_node": row.train_single(),
                      "train_multi_node": row.train_multi()})
        print(f"## {row.name}: target {row.paper} bits/dim (RealNVP {row.realnvp})")
        print(f"   source: {SOURCES[row.problem]}")
        print(f"   data:   {row.data_prep}")
        print(f"   train (one node, all its GPUs via tf.distribute): {row.train_single()}")
        print(f"   train (Horovod, {row.gpus} processes):            {row.train_multi()}")
        print(f"   test:   python evaluate.py --restore_path runs/table2/{row.key}")
        cpu = f"{cpu_h:.1f} h/epoch on this CPU ({ips} img/s)" if cpu_h else "CPU: not measured"
        print(f"   time:   {gflop:.1f} GFLOP per training image x {row.images_per_epoch} images "
              f"per epoch: {cpu}; ~{gpu_min:.1f} min/epoch on {args.gpus} GPUs\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)
    return table


# ------------------------------------------------------------------------------ results


def run_result(run):
    """(row or None, bits/dim, source) of a finished run directory."""
    with open(os.path.join(run, "hparams.json")) as f:
        hp = json.load(f)
    category = os.path.basename(os.path.normpath(hp.get("data_dir", ""))) \
        if hp.get("problem") == "lsun_realnvp" else ""
    category = hp.get("category") or category
    row = next((r for r in ROWS if r.problem == hp.get("problem")
                and r.image_size == hp.get("image_size") and r.category == category), None)
    eval_json = os.path.join(run, "eval", "eval.json")
    if os.path.exists(eval_json):
        with open(eval_json) as f:
            return row, float(json.load(f)["bits_per_dim"]), "eval.json"
    from tfglow.plots import read_log

    tests = [r for r in read_log(os.path.join(run, "test.txt"))[1] if "bits_x" in r]
    if not tests:
        raise ValueError(f"{run}: no validation in test.txt yet")
    best = min(tests, key=lambda r: float(r["bits_x"]))
    return row, float(best["bits_x"]), f"test.txt epoch {best.get('epoch')}"


def results(args):
    lines = []
    for run in args.runs:
        try:
            row, bpd, source = run_result(run)
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"table2 results: {run}: {e}")
        lines.append({"run": run, "row": row.name if row else None, "bits_per_dim": bpd,
                      "paper": row.paper if row else None, "source": source,
                      "difference": round(bpd - row.paper, 4) if row else None})
    width = max([len(l["run"]) for l in lines] + [3])
    print(f"{'run':<{width}}  {'row':<16} {'ours':>7} {'paper':>7} {'diff':>7}  source")
    for l in lines:
        paper = f"{l['paper']:.2f}" if l["paper"] is not None else "-"
        diff = f"{l['difference']:+.3f}" if l["difference"] is not None else "-"
        print(f"{l['run']:<{width}}  {l['row'] or '(no row)':<16} {l['bits_per_dim']:>7.3f} "
              f"{paper:>7} {diff:>7}  {l['source']}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("plan", help="commands and time per epoch for every row")
    pl.add_argument("--gpu_tflops", type=float, default=15.7, help="peak fp32 TFLOP/s (V100)")
    pl.add_argument("--gpu_utilisation", type=float, default=0.4)
    pl.add_argument("--gpus", type=int, default=8)
    pl.add_argument("--json", default="", help="also write the plan as JSON")
    me = sub.add_parser("measure", help="time each row's train step on this machine")
    me.add_argument("--batch", type=int, default=4)
    me.add_argument("--steps", type=int, default=3)
    for q in (pl, me):
        q.add_argument("--timing", default=TIMING)
    re_ = sub.add_parser("results", help="finished runs vs the paper")
    re_.add_argument("runs", nargs="+", help="train.py --logdir folders")
    args = p.parse_args(argv)
    return {"plan": plan, "measure": measure, "results": results}[args.cmd](args)


if __name__ == "__main__":
    main()
