"""The whole benchmark suite in one command: train step, memory against depth, sampling, data.

    python benchmarks/suite.py [--quick] [--device /GPU:0]

Runs, each in its own processes and in this order (so they do not share the machine):
    train_step.py --suite      images/s, FLOP rate and its fraction of the matmul peak
    memory.py                  peak step memory at K = 4, 8, 16, 32 for gradient modes 0, 1, 2
    sampling.py                sampling latency (cifar10 batch 1 and 64, celeba batch 1)
    data_pipeline.py           input pipeline images/s at dal 0, 1, 2
Each writes its own JSON in benchmarks/results/; this script prints one summary table and
writes benchmarks/results/suite.json (machine info, commands, the summary). --quick runs
smaller versions (depths 4 and 8, fewer batches; results in /tmp/tfglow-bench-quick) to check
that the suite works, in minutes rather than hours.
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS, ROOT, command_line, machine_info, write_json  # noqa: E402


def commands(quick, device, out_dir):
    dev = ["--device", device] if device else []
    out = lambda name: ["--out", os.path.join(out_dir, name)]  # noqa: E731
    if quick:
        return {
            "train_step": ["train_step.py", "--width", "64", "--depth", "4", "--steps", "3",
                           *dev],
            "memory": ["memory.py", "--depths", "4", "8", "--width", "32", *out("memory.json")],
            "sampling": ["sampling.py", "--rows", "digits:1", "--reps", "1",
                         *out("sampling.json")],
            "data_pipeline": ["data_pipeline.py", "--n_images", "2000", "--batches", "50",
                              *out("data_pipeline.json")],
        }
    return {
        "train_step": ["train_step.py", "--suite", *dev, *out("train_step.json")],
        "memory": ["memory.py", *out("memory.json")],
        "sampling": ["sampling.py", "--rows", "cifar10:1,cifar10:64,celeba:1",
                     *out("sampling.json")],
        "data_pipeline": ["data_pipeline.py", *out("data_pipeline.json")],
    }


def json_lines(text):
    rows = []
    for line in text.splitlines():
        line = line.removeprefix("RESULT ")
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def summary_rows(name, rows):
    """(benchmark, configuration, images/s, peak MB, extra) per result line."""
    out = []
    for r in rows:
        if name == "train_step":
            conf = (f"w{r.get('width')} K{r.get('depth')} gc{r.get('gradient_checkpointing')}"
                    f"{' xla' if r.get('xla') else ''} {r.get('conv_impl', '')}"
                    f" {r.get('precision', '')}")
            extra = f"{r.get('achieved_gflops')} GF/s = {r.get('peak_fraction')} of matmul peak"
        elif name == "memory":
            conf = f"w{r.get('width')} K{r.get('depth')} gc{r.get('mode')}"
            extra = f"step memory {r.get('peak_memory_mb')} MB"
        elif name == "sampling":
            conf = f"{r.get('preset')} batch {r.get('batch')}"
            extra = f"{r.get('ms_per_batch')} ms per batch"
        else:
            conf = f"dal {r.get('dal')} batch {r.get('batch_size')}"
            extra = ""
        out.append((name, conf, r.get("images_per_s"), r.get("peak_memory_mb", r.get("peak_rss_mb")),
                    extra))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--out_dir", default=None,
                   help="default: benchmarks/results (a temporary directory with --quick)")
    args = p.parse_args()
    if args.out_dir is None:
        args.out_dir = os.path.join("/tmp", "tfglow-bench-quick") if args.quick else RESULTS
    runs, table = {}, []
    for name, argv in commands(args.quick, args.device, args.out_dir).items():
        cmd = [sys.executable, os.path.join(ROOT, "benchmarks", argv[0]), *argv[1:]]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        rows = json_lines(proc.stdout)
        runs[name] = {"command": " ".join(["python", "benchmarks/" + argv[0], *argv[1:]]),
                      "returncode": proc.returncode, "seconds": round(time.time() - t0, 1),
                      "rows": rows}
        if proc.returncode:
            runs[name]["error"] = proc.stderr[-1000:]
        table += summary_rows(name, rows)
        print(f"{name}: exit {proc.returncode}, {len(rows)} rows, {runs[name]['seconds']} s",
              flush=True)
    print(f"\n{'benchmark':<14} {'configuration':<42} {'img/s':>9} {'peak MB':>8}  notes")
    for name, conf, ips, mem, extra in table:
        print(f"{name:<14} {conf:<42} {ips!s:>9} {mem!s:>8}  {extra}")
    write_json(os.path.join(args.out_dir, "suite.json"),
               {"command": command_line(), "machine": machine_info(), "runs": runs})
    return 1 if any(r["returncode"] for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
