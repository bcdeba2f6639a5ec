"""Flow++ Table 2: the full model and its ablations trained for the same number of steps,
test bits/dim against steps as a table (JSON, markdown) and a plot (PNG).

    python benchmarks/ablation.py --problem cifar10 --data_dir data/cifar10 --steps 400000 \
        [--variants full uniform_dequant affine no_attention] [--replicas 8 --n_batch_train 8]
    python benchmarks/ablation.py --problem digits --steps 480     # the CPU check, minutes

Each variant is a `train.py --model flowpp` run (a subprocess, in OUT/<variant>; an existing
run is resumed, so an interrupted table continues). On a problem with a Flow++ preset of its
own (digits) the variants are that config with the ablation's fields changed; otherwise they
are the paper presets flowpp_cifar10[_uniform_dequant|_affine|_no_attention], whose conditioner
widths keep the parameter counts of the paper's ablations. Extra train.py flags follow `--`
(e.g. `-- --n_test 1000`). Steps: n_processed / (n_batch_train * --replicas), the images each
test.txt record had seen over the global batch. A run that stops between validations gets a
last one (`train.py --validate_only`) at its final step.

Outputs: OUT/ablation.json (per variant its curve [[step, test bits/dim], ...] and final
figure, with the paper's Table 2 beside it), OUT/ablation.md and OUT/ablation.png.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, command_line, write_json  # noqa: E402

#: variant -> (paper preset, the fields it changes in a problem's own Flow++ config).
VARIANTS = {
    "full": ("flowpp_cifar10", []),
    "uniform_dequant": ("flowpp_cifar10_uniform_dequant", ["dequantization=uniform"]),
    "affine": ("flowpp_cifar10_affine", ["coupling=affine"]),
    "no_attention": ("flowpp_cifar10_no_attention", ["attention=false",
                                                     "dequant_attention=false"]),
}
#: Flow++ Table 2 (CIFAR-10 test bits/dim after 400 epochs).
PAPER_TABLE2 = {"uniform_dequant": 3.292, "affine": 3.292, "no_attention": 3.193, "full": 3.165}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problem", default="digits")
    p.add_argument("--data_dir", default="")
    p.add_argument("--steps", type=int, required=True, help="Training steps of every variant")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--n_batch_train", type=int, default=None, help="Per replica (default 64)")
    p.add_argument("--replicas", type=int, default=1, help="Replicas of each run (for steps)")
    p.add_argument("--out", default=os.path.join(RESULTS, "ablation"))
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train.py flags")
    return p


def variant_args(problem, name):
    """train.py flags choosing the variant's model on `problem`."""
    from tfglow.family import get_family

    preset, fields = VARIANTS[name]
    if problem in get_family("flowpp").problem_presets:
        return ["--model", "flowpp"] + (["--model_set", *fields] if fields else [])
    return ["--preset", preset]


def train_py(*args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def test_curve(logdir, batch, replicas, final_step):
    """[(step, test bits/dim)] of a run's test.txt; a record without n_processed (from
    --validate_only) is at final_step."""
    from tfglow.plots import read_log

    points = {}
    for record in read_log(os.path.join(logdir, "test.txt"))[1]:
        step = (record["n_processed"] / (batch * replicas) if "n_processed" in record
                else final_step)
        points[int(round(step))] = float(record["bits_x"])
    return sorted(points.items())


def run_variant(args, name, extra):
    logdir = os.path.join(args.out, name)
    common = ["--problem", args.problem, "--logdir", logdir, *variant_args(args.problem, name),
              *(["--data_dir", args.data_dir] if args.data_dir else []),
              *(["--n_batch_train", str(args.n_batch_train)] if args.n_batch_train else []),
              *extra]
    train_py(*common, "--max_steps", str(args.steps), "--epochs", str(10 ** 6),
             "--no_progress", "--restore_if_exists")
    hparams = json.load(open(os.path.join(logdir, "hparams.json")))
    batch = hparams["n_batch_train"]
    curve = test_curve(logdir, batch, args.replicas, args.steps)
    if not curve or curve[-1][0] < args.steps:  # stopped between validations
        train_py(*common, "--restore_path", logdir, "--validate_only")
        curve = test_curve(logdir, batch, args.replicas, args.steps)
    return {"logdir": logdir, "train_flags": common, "family_config": hparams["family_config"],
            "curve": curve, "final_step": curve[-1][0], "final_test_bits_per_dim": curve[-1][1],
            "paper_table2": PAPER_TABLE2[name]}


def markdown(results, steps, problem):
    lines = [f"Flow++ ablations on {problem}, {steps} steps each (test bits/dim, one sample):",
             "", "| variant | test bits/dim | paper Table 2 (CIFAR-10, 400 epochs) |",
             "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['final_test_bits_per_dim']:.4f} | {r['paper_table2']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    extra = [a for a in args.train_args if a != "--"]
    if args.steps < 1:
        raise SystemExit("ablation.py: error: --steps must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name in args.variants:
        results[name] = run_variant(args, name, extra)
        print(f"{name}: test bits/dim {results[name]['final_test_bits_per_dim']:.4f} at step "
              f"{results[name]['final_step']}", flush=True)
    from tfglow.plots import curves_with_spread

    write_json(os.path.join(args.out, "ablation.json"),
               {"command": command_line(), "problem": args.problem, "steps": args.steps,
                "variants": results})
    with open(os.path.join(args.out, "ablation.md.tmp"), "w") as f:
        f.write(markdown(results, args.steps, args.problem))
    os.replace(os.path.join(args.out, "ablation.md.tmp"), os.path.join(args.out, "ablation.md"))
    curves_with_spread({name: [r["curve"]] for name, r in results.items()},
                       os.path.join(args.out, "ablation.png"), xlabel="step",
                       title=f"Flow++ ablations (Table 2) on {args.problem}")
    print(markdown(results, args.steps, args.problem))
    print(f"wrote {args.out}/ablation.json, ablation.md, ablation.png")
    return results


if __name__ == "__main__":
    main()
