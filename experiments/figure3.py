"""Glow Figure 3: test bits/dim against epochs for reverse / shuffle / 1x1-convolution
permutations with additive and affine coupling, several seeds each.

    python -m experiments.figure3 --data_dir digits --epochs 20 --out experiments/results/figure3_digits
    python -m experiments.figure3 --problem cifar10 --data_dir data/cifar10 --preset cifar10 \
        --epochs 300 --jobs 8 --gpus 0,1,2,3,4,5,6,7 --out runs/figure3_cifar10     # the paper's

Each variant x seed is one `train.py` run in RUNS/<variant>_seed<S> (--runs, default OUT_runs;
validation every
epoch, the original's flags otherwise; `--train_flag=--x=y` adds any train.py flag). Runs that
stopped are resumed (--restore_if_exists), finished ones are only read, so the command can be
repeated. Then OUT.json holds every curve and the ordering checks, and OUT.png the figure:
one line per variant (mean over seeds) with the min-max band over seeds.

The paper's ordering (Figure 3, CIFAR-10): 1x1 convolution < shuffle < reverse in bits/dim for
both couplings, and affine <= additive. `ordering()` checks both per seed at the last epoch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "1x1 conv"}
COUPLINGS = {0: "additive", 1: "affine"}
#: variant key -> (flow_permutation, flow_coupling), in the paper's legend order.
VARIANTS = {f"{PERMUTATIONS[p].replace(' ', '')}-{COUPLINGS[c]}": (p, c)
            for c in (0, 1) for p in (0, 1, 2)}


def label(key):
    p, c = VARIANTS[key]
    return f"{PERMUTATIONS[p]}, {COUPLINGS[c]}"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--out", required=True, help="OUT: figure OUT.png, data OUT.json")
    a("--runs", default="", help="folder of the train.py runs (default OUT_runs)")
    a("--problem", default="digits")
    a("--data_dir", default="", help="a data_prep directory (default: the problem's)")
    a("--preset", default=None, help="train.py --preset for the model flags")
    a("--epochs", type=int, default=20)
    a("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    a("--jobs", type=int, default=1, help="train.py processes at once")
    a("--gpus", default="", help="comma-separated GPU ids, one per job slot (CUDA_VISIBLE_DEVICES)")
    a("--train_flag", action="append", default=[], metavar="--FLAG=VALUE",
      help="extra train.py flag (repeatable), e.g. --train_flag=--n_train=3000")
    a("--max_steps", type=int, default=0, help="train.py --max_steps (tests)")
    return p


def run_dir(args, key, seed):
    return os.path.join(args.runs, f"{key}_seed{seed}")


def train_command(args, key, seed):
    p, c = VARIANTS[key]
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--problem", args.problem,
           "--logdir", run_dir(args, key, seed), "--flow_permutation", str(p),
           "--flow_coupling", str(c), "--seed", str(seed), "--epochs", str(args.epochs),
           "--epochs_full_valid", "1", "--restore_if_exists", "--no_progress"]
    if args.data_dir:
        cmd += ["--data_dir", args.data_dir]
    if args.preset:
        cmd += ["--preset", args.preset]
    if args.max_steps:
        cmd += ["--max_steps", str(args.max_steps)]
    return cmd + list(args.train_flag)


def finished(directory, epochs):
    """True when the run's train.txt has its last epoch."""
    path = os.path.join(directory, "train.txt")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        lines = [json.loads(l) for l in f if l.strip()][1:]
    return any(r.get("epoch") == epochs for r in lines)


def run_all(args, keys):
    """Runs every unfinished variant x seed, `--jobs` at a time; raises if one fails."""
    todo = [(k, s) for s in args.seeds for k in keys
            if args.max_steps or not finished(run_dir(args, k, s), args.epochs)]
    gpus = [g for g in args.gpus.split(",") if g.strip()]
    running, failed = {}, []
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            key, seed = todo.pop(0)
            slot = next(i for i in range(max(1, args.jobs)) if i not in running.values())
            env = dict(os.environ, PYTHONPATH=ROOT)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            os.makedirs(run_dir(args, key, seed), exist_ok=True)
            log = open(os.path.join(run_dir(args, key, seed), "stdout.txt"), "a")
            proc = subprocess.Popen(train_command(args, key, seed), cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
            running[(proc, log, key, seed)] = slot
            print(f"started {key} seed {seed}", flush=True)
        time.sleep(0.5)
        for item in [i for i in running if i[0].poll() is not None]:
            proc, log, key, seed = item
            log.close()
            del running[item]
            status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
            print(f"{status}: {key} seed {seed}", flush=True)
            if proc.returncode != 0:
                failed.append(f"{run_dir(args, key, seed)}/stdout.txt")
    if failed:
        raise RuntimeError(f"train.py failed; see {', '.join(failed)}")


def test_curve(directory):
    """[(epoch, test bits_x), ...] of a run (last record per epoch)."""
    from tfglow.plots import curve, read_log

    return [(int(e), v) for e, v in curve(read_log(os.path.join(directory, "test.txt"))[1])]


def ordering(curves):
    """Checks of the paper's ordering at each seed's last common epoch.

    curves: {variant key: {seed: [(epoch, bpd), ...]}}. Returns, per coupling, how many seeds
    rank 1x1 conv < shuffle < reverse (and 1x1 conv best), per permutation how many seeds have
    affine <= additive, and the seed count.
    """
    def final(key, seed):
        return curves[key][seed][-1][1] if curves.get(key, {}).get(seed) else None

    seeds = sorted({s for runs in curves.values() for s in runs})
    out = {"seeds": len(seeds), "per_coupling": {}, "affine_better": {}}
    for c, cname in COUPLINGS.items():
        keys = [k for k, (p, cc) in VARIANTS.items() if cc == c]
        rows = [{VARIANTS[k][0]: final(k, s) for k in keys} for s in seeds]
        rows = [v for v in rows if None not in v.values()]
        out["per_coupling"][cname] = {
            "seeds_compared": len(rows),
            "conv_lt_shuffle_lt_reverse": sum(v[2] < v[1] < v[0] for v in rows),
            "conv_best": sum(v[2] < min(v[0], v[1]) for v in rows)}
    for p, pname in PERMUTATIONS.items():
        add = [k for k, v in VARIANTS.items() if v == (p, 0)][0]
        aff = [k for k, v in VARIANTS.items() if v == (p, 1)][0]
        pairs = [(final(aff, s), final(add, s)) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        out["affine_better"][pname] = {"seeds_compared": len(pairs),
                                       "affine_le_additive": sum(a <= b for a, b in pairs)}
    return out


def summarise(args, keys):
    """{variant: {seed: curve}}, the ordering, the figure and the JSON; returns the JSON dict."""
    from tfglow.plots import curves_with_spread

    curves = {k: {s: test_curve(run_dir(args, k, s)) for s in args.seeds} for k in keys}
    finals = {}
    for k in keys:
        last = [c[-1][1] for c in curves[k].values() if c]
        finals[k] = {"mean": sum(last) / len(last), "min": min(last), "max": max(last),
                     "per_seed": [c[-1][1] if c else None for c in curves[k].values()]}
    with open(os.path.join(run_dir(args, keys[0], args.seeds[0]), "hparams.json")) as f:
        hparams = json.load(f)
    result = {
        "figure": "Glow Figure 3 (permutation x coupling ablation)",
        "command": " ".join([os.path.basename(sys.executable), "-m", "experiments.figure3",
                             *sys.argv[1:]]),
        "data_dir": hparams.get("data_dir"), "problem": args.problem, "epochs": args.epochs,
        "seeds": args.seeds,
        "model": {k: hparams.get(k) for k in ("image_size", "n_levels", "depth", "width",
                                              "learntop", "n_bits_x", "lr", "n_train",
                                              "n_batch_train", "epochs_warmup")},
        "variants": {k: {"label": label(k), "flow_permutation": VARIANTS[k][0],
                         "flow_coupling": VARIANTS[k][1],
                         "curves": {str(s): c for s, c in curves[k].items()},
                         "final_test_bits_per_dim": finals[k]} for k in keys},
        "ordering": ordering(curves),
    }
    # As the paper's figure: a colour per permutation, dashed additive, solid affine.
    styles = {label(k): ("-" if VARIANTS[k][1] == 1 else "--") for k in keys}
    colours = {label(k): f"C{VARIANTS[k][0]}" for k in keys}
    curves_with_spread({label(k): [c for c in curves[k].values() if c] for k in keys},
                       args.out + ".png", ylabel="test bits/dim", styles=styles, colours=colours,
                       title=f"Figure 3 on {args.problem}: {len(args.seeds)} seed(s), "
                             "mean and min-max")
    tmp = args.out + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out + ".json")
    return result


def main(argv=None):
    args = build_parser().parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown or not keys:
        sys.exit(f"figure3: --variants {unknown or args.variants!r}: choose from {list(VARIANTS)}")
    args.out = os.path.abspath(args.out)
    args.runs = os.path.abspath(args.runs or args.out + "_runs")
    try:
        run_all(args, keys)
    except RuntimeError as e:
        sys.exit(f"figure3: {e}")
    result = summarise(args, keys)
    print(f"{'variant':<22} {'final test bits/dim (mean, min-max over seeds)':>48}")
    for k in keys:
        f = result["variants"][k]["final_test_bits_per_dim"]
        print(f"{label(k):<22} {f['mean']:>26.4f}   [{f['min']:.4f}, {f['max']:.4f}]")
    print(json.dumps(result["ordering"]))
    print(f"wrote {args.out}.png and {args.out}.json")
    return result


if __name__ == "__main__":
    main()
