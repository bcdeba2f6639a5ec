"""train.py: flags as the original, a run's outputs, exact resume, divergence, replicas."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfglow.training.hparams import build_parser, resolve
from tfglow.training.trainer import Trainer, TrainingDiverged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--problem", "digits", "--depth", "1", "--width", "8", "--n_train", "96",
        "--n_batch_train", "16", "--n_batch_init", "32", "--epochs_full_sample", "1000",
        "--no_progress", "--deterministic", "--n_test", "64"]


def hps_for(tmp_path, *extra):
    return resolve(build_parser().parse_args(TINY + ["--logdir", str(tmp_path)] + list(extra)))


def weights(trainer):
    return [v.numpy() for v in trainer.model.weights] + \
        [v.numpy() for v in trainer.optimizer.variables]


def test_flags_keep_the_original_names_and_defaults():
    hps = resolve(build_parser().parse_args(["--data_dir", "x"]))
    assert (hps.problem, hps.n_batch_train, hps.n_batch_init, hps.lr, hps.optimizer, hps.depth,
            hps.width, hps.n_levels, hps.flow_permutation, hps.flow_coupling, hps.epochs_warmup,
            hps.epochs_full_valid, hps.anchor_size, hps.n_train, hps.image_size, hps.n_y,
            hps.learntop, hps.gradient_checkpointing, hps.polyak_epochs, hps.dal) == (
        "cifar10", 64, 256, 0.001, "adamax", 32, 512, 3, 2, 0, 10, 50, 32, 50000, 32, 10,
        False, 1, 1, 1)
    readme = resolve(build_parser().parse_args(
        "--problem celeba --image_size 256 --n_level 6 --depth 32 --flow_permutation 2 "
        "--flow_coupling 0 --seed 0 --learntop --lr 0.001 --n_bits_x 5 --data_dir d".split()))
    assert (readme.n_levels, readme.n_bits_x, readme.learntop, readme.n_y) == (6, 5, True, 1)
    assert readme.local_batch_train == 1 and readme.local_batch_init == 4  # anchor scaling
    preset = resolve(build_parser().parse_args(["--preset", "cifar10", "--data_dir", "x"]))
    assert (preset.flow_coupling, preset.learntop) == (1, True)


def test_digits_defaults_and_missing_data_error():
    hps = resolve(build_parser().parse_args(["--problem", "digits"]))
    assert (hps.image_size, hps.n_channels, hps.data_dir, hps.local_batch_train) == (8, 1, "digits", 64)
    with pytest.raises(Exception, match="python -m data_prep cifar10"):
        Trainer(resolve(build_parser().parse_args(["--problem", "cifar10", "--depth", "1"])))


def test_a_run_writes_logs_checkpoints_and_samples(tmp_path):
    hps = hps_for(tmp_path, "--epochs", "2", "--epochs_full_sample", "2")
    Trainer(hps).run()
    lines = [json.loads(l) for l in open(tmp_path / "train.txt")]
    assert lines[0]["problem"] == "digits" and [l["epoch"] for l in lines[1:]] == [1, 2]
    assert all(np.isfinite(l["bits_x"]) for l in lines[1:])
    tests = [json.loads(l) for l in open(tmp_path / "test.txt")][1:]
    assert [t["n_images"] for t in tests] == [64, 64]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-12")
    assert tf.train.latest_checkpoint(str(tmp_path / "best"))
    assert len(list(tmp_path.glob("epoch_2_sample_*.png"))) == 8
    assert json.load(open(tmp_path / "hparams.json"))["depth"] == 1
    assert list((tmp_path / "tensorboard").iterdir())
    with pytest.raises(FileExistsError, match="--restore_path"):
        Trainer(hps).run()


def test_resume_is_exact(tmp_path):
    straight = Trainer(hps_for(tmp_path / "a", "--max_steps", "8", "--ckpt_every", "3"))
    straight.run()
    first = Trainer(hps_for(tmp_path / "b", "--max_steps", "5", "--ckpt_every", "3"))
    first.run()
    del first
    resumed = Trainer(hps_for(tmp_path / "b", "--max_steps", "8", "--ckpt_every", "3",
                              "--restore_path", str(tmp_path / "b")))
    resumed.run()
    assert int(resumed.step.numpy()) == 8
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_a_nonfinite_step_stops_and_keeps_the_last_checkpoint(tmp_path):
    trainer = Trainer(hps_for(tmp_path, "--ckpt_every", "2", "--epochs", "3"))
    real_step = trainer.train_step._fn

    def poisoned(batch, step):
        stats = real_step(batch, step)
        return {**stats, "loss": tf.constant(np.nan)} if int(step) == 4 else stats

    trainer.train_step._fn = poisoned
    with pytest.raises(TrainingDiverged, match="step 4"):
        trainer.run()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    report = json.load(open(tmp_path / "nonfinite_step4_worker0.json"))
    assert report["step"] == 4
    batch = np.load(tmp_path / "nonfinite_step4_worker0.npz")
    assert batch["x"].shape == (16, 8, 8, 1) and batch["x"].dtype == np.uint8


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfglow.training.hparams import build_parser, resolve
from tfglow.training.trainer import Trainer
trainer = Trainer(resolve(build_parser().parse_args(sys.argv[1:])))
assert trainer.rt.num_replicas == 2, trainer.rt
trainer.run()
"""


def _checkpoint_tensors(logdir):
    path = tf.train.latest_checkpoint(str(logdir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
            if n.startswith(("model/", "optimizer/"))}


# Reversible backprop (2) only: its custom gradients are where replicas could differ; the plain
# path is the same trainer code (and Flow++'s test runs it, tests/test_train_flowpp.py).
@pytest.mark.parametrize("mode", ["2"])
@pytest.mark.slow
def test_two_replicas_equal_one_device_with_the_same_global_batch(tmp_path, mode):
    # A fresh process for the 2-replica run: collective ops of two MirroredStrategy objects in
    # one process (another test's) can collide, which a training process never does.
    common = ["--max_steps", "3", "--gradient_checkpointing", mode]
    Trainer(hps_for(tmp_path / "one", "--n_batch_train", "32", "--n_batch_init", "32",
                    "--distribute", "none", *common)).run()
    args = TINY + ["--logdir", str(tmp_path / "two"), "--n_batch_train", "16",
                   "--n_batch_init", "16", "--distribute", "mirrored", *common]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=400, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _checkpoint_tensors(tmp_path / "one"), _checkpoint_tensors(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 60
    for name in one:
        np.testing.assert_allclose(one[name], two[name], atol=1e-5, err_msg=name)


KILLER = """
import os, signal, sys
sys.argv = ["train.py"] + sys.argv[1:]
from tensorflow.python.checkpoint import checkpoint_management as cm
real = cm.update_checkpoint_state_internal
def kill_at_step_4(save_dir, model_checkpoint_path, *a, **k):
    # The model checkpoint of step 4: its files are written, the index not yet updated.
    if save_dir.rstrip("/").endswith("checkpoints") and model_checkpoint_path.endswith("ckpt-4"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(save_dir, model_checkpoint_path, *a, **k)
cm.update_checkpoint_state_internal = kill_at_step_4
import train
train.main()
"""


@pytest.mark.slow
def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    args = TINY + ["--logdir", str(tmp_path), "--ckpt_every", "2", "--max_steps", "6"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert (tmp_path / "checkpoints" / "ckpt-4.index").exists()  # written, never made current
    resumed = Trainer(hps_for(tmp_path, "--ckpt_every", "2", "--max_steps", "6",
                              "--restore_path", str(tmp_path)))
    resumed.run()
    straight = Trainer(hps_for(tmp_path / "straight", "--ckpt_every", "2", "--max_steps", "6"))
    straight.run()
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_array_equal(a, b)


def _free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _assert_identical_workers(logdir):
    chief = tf.train.latest_checkpoint(str(logdir / "checkpoints"))
    worker = tf.train.latest_checkpoint(str(logdir / ".worker1_scratch" / "checkpoints"))
    assert chief.endswith("ckpt-4") and worker.endswith("ckpt-4")
    a, b = tf.train.load_checkpoint(chief), tf.train.load_checkpoint(worker)
    # Weights, moments and Polyak averages (Keras files the weights under the optimizer).
    names = [n for n, _ in tf.train.list_variables(chief) if n.startswith(("model/", "optimizer/"))]
    assert len(names) > 60
    for name in names:
        np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)
    # Each worker kept the position in its own shard of the data.
    assert (logdir / "data" / "worker0").is_dir() and (logdir / "data" / "worker1").is_dir()


DIST = TINY + ["--max_steps", "4", "--n_train", "64", "--epochs_full_valid", "1000"]


@pytest.mark.slow
def test_the_originals_mpiexec_line_trains_with_horovod(tmp_path):
    # The original README's `mpiexec -n 8 python train.py ...`, with 2 processes: no
    # --distribute, Horovod over MPI (tools/build_horovod.sh builds it with Open MPI). horovodrun
    # with Gloo is tested in test_horovod.py; launch detection of each launcher in
    # test_train_departures.py.
    import shutil

    from test_horovod import _horovodrun

    _horovodrun()
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec not found: `make horovod` (tools/build_horovod.sh) installs Open MPI"
    cmd = [mpiexec, "-n", "2", "--oversubscribe", "--bind-to", "none", sys.executable,
           os.path.join(ROOT, "train.py"), *DIST, "--logdir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "OMPI_COMM_WORLD_SIZE=2, training with Horovod" in proc.stdout
    _assert_identical_workers(tmp_path)


@pytest.mark.slow
def test_two_multiworker_processes_train_to_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = DIST + ["--logdir", str(tmp_path), "--distribute", "multiworker"]
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    _assert_identical_workers(tmp_path)


def test_any_data_prep_directory_trains_with_xla(tmp_path):
    from data_prep.cli import main as data_prep_main

    data_prep_main(["digits", "--out", str(tmp_path / "data"), "--quiet"])
    args = list(TINY)
    args[args.index("--problem") + 1] = "my_digits"  # not in the problem table
    hps = resolve(build_parser().parse_args(
        args + ["--data_dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "run"),
                "--max_steps", "2", "--xla"]))
    assert (hps.image_size, hps.n_channels, hps.n_y) == (8, 1, 10)   # from dataset.json
    trainer = Trainer(hps)
    trainer.run()
    assert int(trainer.step.numpy()) == 2
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)
