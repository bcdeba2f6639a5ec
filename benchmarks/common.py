"""Helpers shared by the benchmark scripts: machine info, peak memory, matmul peak, JSON output.

Each script runs unchanged on a GPU machine: TensorFlow places ops on the first GPU when there
is one, `--device` pins them (e.g. /CPU:0 or /GPU:1), and the machine info lists the GPUs.
"""
import contextlib
import json
import os
import platform
import resource
import sys
import time

# The CPU kernels `import tfglow` selects (tfglow/__init__.py), for scripts that import
# TensorFlow before tfglow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def peak_rss_mb():
    """Peak resident memory of this process so far (MB), TensorFlow's own ~0.5 GB included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_status_mb(*keys):
    """{key: MB} from /proc/self/status (VmRSS, VmHWM)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in keys:
                out[key] = int(value.split()[0]) / 1024.0
    return out


def machine_info():
    import numpy as np
    import tensorflow as tf

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "sched_affinity": affinity,
            "tensorflow": tf.__version__, "numpy": np.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def matmul_peak_gflops(dtype="float32", n=2048, repeats=5, device=None):
    """Best-of-`repeats` GFLOP/s of one n x n x n matmul in `dtype` on `device` (compiled)."""
    import tensorflow as tf

    with tf.device(device) if device else contextlib.nullcontext():
        a = tf.random.normal([n, n], dtype=tf.float32)
        b = tf.random.normal([n, n], dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
        matmul = tf.function(lambda p, q: tf.reduce_sum(tf.cast(p @ q, tf.float32)[0, :1]))
        best = best_seconds(lambda: matmul(a, b).numpy(), repeats)
    return 2.0 * n ** 3 / best / 1e9


def best_seconds(run, repeats):
    """The fastest of `repeats` timed calls of run(), after one untimed call (tracing)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def write_json(path, obj):
    """Writes obj as indented JSON to path atomically (a temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def command_line():
    return " ".join(["python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
