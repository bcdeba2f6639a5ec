"""Horovod (Gloo, loopback): 2 workers via horovodrun agree with a single-process reference.

Needs Horovod built for this environment: run ``tools/build_horovod.sh`` first (CI does).
This test deliberately fails (never skips) when Horovod is missing.
"""

import importlib.util
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "horovod_worker.py")
NP = 2
TIMEOUT_S = 120
BUILD_HINT = "run tools/build_horovod.sh (builds and installs Horovod for this venv)"


def _load_worker_module():
    spec = importlib.util.spec_from_file_location("horovod_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _horovodrun():
    bin_dir = os.path.dirname(sys.executable)
    exe = os.path.join(bin_dir, "horovodrun")
    check = subprocess.run(
        [sys.executable, "-c", "import horovod.tensorflow as hvd; assert hvd.gloo_built()"],
        capture_output=True, text=True, timeout=120)
    if check.returncode != 0 or not os.path.exists(exe):
        pytest.fail(f"Horovod with Gloo is not usable from {sys.executable}: {BUILD_HINT}.\n"
                    f"{check.stderr[-1500:]}", pytrace=False)
    return exe


def _run_workers(outdir):
    cmd = [_horovodrun(), "--gloo", "-np", str(NP), "-H", f"localhost:{NP}",
           "--start-timeout", "60", sys.executable, WORKER, str(outdir)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the horovodrun we started and its workers
        out, _ = proc.communicate()
        pytest.fail(f"horovodrun timed out after {TIMEOUT_S} s:\n{out[-4000:]}", pytrace=False)
    assert proc.returncode == 0, f"horovodrun failed (rc={proc.returncode}):\n{out[-4000:]}"
    return out


@pytest.mark.slow
def test_horovod_gloo_two_workers(tmp_path):
    out = _run_workers(tmp_path)
    results = []
    for r in range(NP):
        path = tmp_path / f"rank{r}.npz"
        assert path.exists(), f"rank {r} wrote no result:\n{out[-4000:]}"
        results.append(dict(np.load(path)))
    assert [int(res["rank"]) for res in results] == list(range(NP))
    assert all(int(res["size"]) == NP for res in results)

    # allreduce / allgather of rank-dependent tensors
    expect_sum = np.array([1.0, 10.0]) * sum(r + 1 for r in range(NP))
    for res in results:
        np.testing.assert_allclose(res["red_sum"], expect_sum)
        np.testing.assert_allclose(res["red_avg"], expect_sum / NP)
        np.testing.assert_array_equal(res["gathered"], np.arange(NP))

    w = _load_worker_module()
    n_vars = len(w.initial_weights(0))
    # broadcast from rank 0: every rank starts from rank 0's (different) initial weights
    for res in results:
        for i, w0 in enumerate(w.initial_weights(0)):
            np.testing.assert_array_equal(res[f"after_broadcast_{i}"], w0)
    assert not np.allclose(w.initial_weights(0)[0], w.initial_weights(1)[0])

    # both workers end with identical state
    keys = [f"{k}_{i}" for k in ("grad", "final", "m1", "m2", "polyak") for i in range(n_vars)]
    for k in keys:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)

    # single-process reference: average the per-rank gradients, one Adamax step
    import tensorflow as tf
    import tfglow.optim as optim

    model = w.build_model(w.initial_weights(0))
    variables = model.trainable_variables
    per_rank = []
    for r in range(NP):
        x, y = w.data(r)
        with tf.GradientTape() as tape:
            loss = w.loss_fn(model, tf.constant(x), tf.constant(y))
        per_rank.append([g.numpy() for g in tape.gradient(loss, variables)])
    mean_grads = [np.mean([g[i] for g in per_rank], axis=0) for i in range(n_vars)]
    opt = optim.Adamax(**w.OPT_KW)
    opt.build(variables)
    opt.apply_gradients(zip([tf.constant(g) for g in mean_grads], variables))

    for i, v in enumerate(variables):
        np.testing.assert_allclose(results[0][f"grad_{i}"], mean_grads[i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(results[0][f"final_{i}"], v.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(results[0][f"m1_{i}"], opt.slot("m1", v).numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(results[0][f"m2_{i}"], opt.slot("m2", v).numpy(), rtol=1e-6, atol=1e-6)
    # the step really moved the weights
    assert not np.allclose(results[0]["final_0"], w.initial_weights(0)[0], atol=1e-3)
