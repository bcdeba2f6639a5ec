"""train.py against the original train.py: schedule, init batch, validation batch, --inference,
launch detection, and what a user sees when a command is refused."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import train
from tfglow.data import make_dataset
from tfglow.training.distribute import auto_kind
from tfglow.training.hparams import build_parser, original_test_batch, resolve
from tfglow.training.problems import PROBLEMS
from tfglow.training.trainer import Trainer, schedule, warmup_warning

from test_train import ROOT, TINY, hps_for  # noqa: E402  (the same tiny digits run)


def snapshot(directory):
    """{relative path: sha256} of every file below `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---------------------------------------------------------------------- pure rules


def test_validation_batch_is_the_originals_table_unless_given():
    table = {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1}  # the original's get_data
    assert {k: original_test_batch(k) for k in table} == table
    assert all(50 % original_test_batch(k) == 0 and original_test_batch(k) <= k
               for k in range(1, 200))
    celeba = resolve(build_parser().parse_args(
        "--problem celeba --n_level 6 --n_bits_x 5 --data_dir d".split()))
    assert celeba.local_batch_train == 1 and celeba.local_batch_test == 1
    assert resolve(build_parser().parse_args(["--data_dir", "d"])).local_batch_test == 50
    given = resolve(build_parser().parse_args(["--data_dir", "d", "--n_batch_test", "7"]))
    assert given.local_batch_test == 7


def test_schedule_is_the_originals():
    def run(efv, efs, epochs=200):
        marks = [schedule(e, efv, efs) for e in range(1, epochs + 1)]
        return ([e for e, (v, _) in enumerate(marks, 1) if v],
                [e for e, (_, s) in enumerate(marks, 1) if s])

    # Defaults (50, 50): validation every 50th; samples at 1, 10 and every 50th.
    assert run(50, 50) == ([50, 100, 150, 200], [1, 10, 50, 100, 150, 200])
    # A shorter sample period only counts in epochs whose report block runs in the original
    # (e < 10, every 10th below 50, every validation epoch): 15, 25, 35, 45, 55 ... are skipped.
    valid, sample = run(50, 5, epochs=100)
    assert sample == [1, 5, 10, 20, 30, 40, 50, 100]
    assert run(1, 5, epochs=20)[1] == [1, 5, 10, 15, 20]   # validating every epoch: every 5th


def test_warmup_longer_than_the_run_is_warned():
    hps = hps_for("/tmp/unused", "--epochs", "2", "--epochs_warmup", "10")
    text = warmup_warning(hps, 1, 2 * 6)
    assert "never reaches --lr" in text and "--epochs_warmup 10" in text
    peak = hps.lr * (11 * 16) / (96 * 10)   # n_processed before the 12th step
    assert f"{peak:.3g}" in text
    assert warmup_warning(hps_for("/tmp/unused", "--epochs_warmup", "1"), 1, 2 * 6) is None


def test_distribute_auto_detects_horovod_and_mpi_launches():
    for var in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                "MV2_COMM_WORLD_SIZE"):
        assert auto_kind({var: "8"}, n_gpus=0) == "horovod", var
    assert auto_kind({"TF_CONFIG": "{}"}, n_gpus=0) == "multiworker"
    assert auto_kind({}, n_gpus=2) == "mirrored"
    assert auto_kind({}, n_gpus=1) == "none"


def test_every_data_hint_is_a_valid_data_prep_command():
    from data_prep.cli import build_parser as data_prep_parser

    parser = data_prep_parser()
    for problem in PROBLEMS.values():
        if not problem.data_prep:
            continue
        words = problem.data_prep.split()
        assert words[:3] == ["python", "-m", "data_prep"], problem.name
        parser.parse_args(words[3:])   # exits (fails the test) on an unknown flag
    assert "--realnvp" in PROBLEMS["lsun_realnvp"].data_prep


def test_the_originals_default_data_dirs_are_used_and_named_when_missing():
    hps = resolve(build_parser().parse_args(["--problem", "imagenet-oord", "--image_size", "32",
                                             "--depth", "1", "--width", "8"]))
    assert hps.data_dir == "/mnt/host/imagenet-oord-tfr"
    with pytest.raises(ValueError, match="/mnt/host/imagenet-oord-tfr.*python -m data_prep imagenet_oord"):
        Trainer(hps)


# ---------------------------------------------------------------------- the trainer


def test_init_batch_is_taken_from_the_training_stream(tmp_path):
    trainer = Trainer(hps_for(tmp_path, "--n_batch_init", "40"))   # 3 train batches of 16
    reference = iter(trainer._train_dataset(trainer._shard))
    batches = [next(reference) for _ in range(4)]
    images, labels = trainer.init_batch()
    np.testing.assert_array_equal(images, np.concatenate([b[0] for b in batches[:3]])[:40])
    np.testing.assert_array_equal(labels, np.concatenate([b[1] for b in batches[:3]])[:40])
    # Consumed, as the original's make_batch(train_iterator): training goes on after them.
    np.testing.assert_array_equal(next(trainer.train_iter)[0], batches[3][0])


def test_a_run_follows_the_schedule_warns_and_logs_no_pred_error(tmp_path, capsys):
    hps = hps_for(tmp_path, "--epochs", "3", "--epochs_full_valid", "2",
                  "--epochs_full_sample", "2", "--epochs_warmup", "5")
    Trainer(hps).run()
    out = capsys.readouterr().out
    assert "never reaches --lr" in out
    assert sorted(p.name for p in tmp_path.glob("epoch_*_sample_0.png")) == [
        "epoch_1_sample_0.png", "epoch_2_sample_0.png"]
    tests = [json.loads(l) for l in open(tmp_path / "test.txt")][1:]
    trains = [json.loads(l) for l in open(tmp_path / "train.txt")][1:]
    assert [t["epoch"] for t in tests] == [2] and [t["epoch"] for t in trains] == [1, 2, 3]
    assert all("pred_error" not in r and "bits_x" in r for r in tests + trains)


def test_inference_writes_decoded_images_and_latents_as_the_original(tmp_path):
    Trainer(hps_for(tmp_path, "--max_steps", "2")).run()
    before = snapshot(tmp_path / "checkpoints")
    x, z = Trainer(hps_for(tmp_path, "--restore_path", str(tmp_path), "--inference")).run()
    images = np.concatenate([b[0].numpy() for b in make_dataset(
        "digits", "validation", 8, 64, shuffle=False, repeat=False, drop_remainder=False)])[:64]
    saved_x, saved_z = np.load(tmp_path / "x.npy"), np.load(tmp_path / "z.npy")
    np.testing.assert_array_equal(saved_x, images)          # decode(encode(x)) == x
    assert saved_z.shape == (64, 8 * 8 * 1) and saved_z.dtype == np.float32
    np.testing.assert_array_equal(saved_z, z)
    assert np.std(saved_z) > 0.1
    assert snapshot(tmp_path / "checkpoints") == before
    results = Trainer(hps_for(tmp_path, "--restore_path", str(tmp_path), "--validate_only")).run()
    assert np.isfinite(results["bits_x"]) and "pred_error" not in results


# ---------------------------------------------------------------------- refused commands


def test_a_resume_with_other_model_flags_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(TINY + ["--logdir", str(run), "--max_steps", "2"]) == 0
    before = snapshot(run)
    for how in (["--restore_path", str(run)], ["--restore_if_exists"]):
        code = train.main(TINY + ["--logdir", str(run), "--max_steps", "4", "--depth", "3",
                                  "--flow_coupling", "0", *how])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "--depth: run 1, given 3" in err[0] and "--flow_coupling: run 1, given 0" in err[0]
        assert snapshot(run) == before
    # Without the differing flags the run's values are taken and the resume goes on.
    args = [a for a in TINY if a not in ("--depth", "1")]
    hps = resolve(build_parser().parse_args(args + ["--logdir", str(run), "--restore_path", str(run)]))
    assert hps.depth == 1
    assert train.main(args + ["--logdir", str(run), "--max_steps", "4", "--restore_path", str(run)]) == 0
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-4")


def _train_py(*args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_user_errors_end_with_one_line_and_no_traceback(tmp_path):
    missing = _train_py("--problem", "cifar10", "--depth", "1", "--logdir", str(tmp_path / "a"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and "--data_dir" in last and "data_prep cifar10" in last
    run = tmp_path / "b"
    assert train.main(TINY + ["--logdir", str(run), "--max_steps", "1"]) == 0
    before = snapshot(run)
    again = _train_py(*TINY, "--logdir", str(run), "--max_steps", "2")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "--restore_path" in again.stderr.strip().splitlines()[-1]
    assert snapshot(run) == before
