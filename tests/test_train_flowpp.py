"""train.py --model flowpp and evaluate.py / SavedModel on a Flow++ run: the official training
flags, exact resume, a kill -9 while checkpointing, the non-finite stop, 2 replicas == 1
device, evaluate.py's figure == the trainer's, importance weighting, and the export loaded
without tfglow. One tiny run (8x8x1 digits, one column stage with attention and the mixture
coupling, a variational dequantizer, dropout 0.2) is shared by the module."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from test_export import _NO_TFGLOW
from test_train import KILLER, MIRRORED, ROOT, _checkpoint_tensors, weights
from tfglow import evaluation, sampling
from tfglow.data import load_numpy
from tfglow.flowpp import FlowPP, FlowPPConfig
from tfglow.training.checkpoints import load_trained
from tfglow.training.hparams import build_parser, resolve
from tfglow.training.trainer import Trainer, TrainingDiverged, learning_rate

# The smallest Flow++ with every part: variational dequantizer (context net, 1 coupling),
# attention, mixture-logistic coupling with K = 2, dropout 0.2 (the config's default).
TINY_MODEL = ["stages=column:1", "filters=8", "blocks=1", "heads=2", "components=2",
              "dequant_steps=1", "dequant_blocks=1", "dequant_filters=8",
              "dequant_context_channels=4", "dequant_context_blocks=1"]
TINY_FP = ["--model", "flowpp", "--problem", "digits", "--n_train", "96", "--n_batch_train",
           "16", "--n_batch_init", "32", "--epochs_full_sample", "1000", "--no_progress",
           "--deterministic", "--n_test", "64", "--warmup_steps", "4", "--epochs", "2",
           "--model_set", *TINY_MODEL]


def fp_hps(logdir, *extra):
    return resolve(build_parser().parse_args(TINY_FP + ["--logdir", str(logdir), *extra]))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 2-epoch run (12 steps, validation every epoch, samples at epoch 1)."""
    logdir = tmp_path_factory.mktemp("flowpp") / "run"
    trainer = Trainer(fp_hps(logdir))
    trainer.run()
    return logdir, weights(trainer)


# ---------------------------------------------------------------------- flags


def test_presets_take_the_official_training_and_refuse_glow_flags():
    hps = resolve(build_parser().parse_args(["--preset", "flowpp_cifar10", "--data_dir", "x"]))
    assert (hps.model, hps.optimizer, hps.lr, hps.beta1, hps.beta2, hps.ema_decay,
            hps.warmup_steps, hps.grad_clip, hps.n_batch_train, hps.n_batch_init) == (
        "flowpp", "adam", 3e-4, 0.9, 0.999, 0.999, 2000, 1.0, 64, 128)
    assert hps.model_config() == FlowPPConfig.preset("cifar10")
    for name, field, value in [("uniform_dequant", "dequantization", "uniform"),
                               ("affine", "coupling", "affine"),
                               ("no_attention", "attention", False)]:
        cfg = resolve(build_parser().parse_args(
            ["--preset", f"flowpp_cifar10_{name}", "--data_dir", "x"])).model_config()
        assert getattr(cfg, field) == value and cfg == FlowPPConfig.preset(f"cifar10_{name}")
    digits = resolve(build_parser().parse_args(["--model", "flowpp", "--problem", "digits"]))
    assert digits.model_config() == FlowPPConfig.preset("digits")
    assert (digits.local_batch_train, digits.n_train, digits.depth) == (64, 1500, None)
    glow = resolve(build_parser().parse_args(["--problem", "digits"]))
    assert (glow.model, glow.lr, glow.warmup_steps, glow.grad_clip, glow.beta2) == (
        "glow", 0.001, 0, 0.0, None)
    for argv, match in [(["--model", "flowpp", "--depth", "3"], "--depth is a Glow flag"),
                        (["--model", "glow", "--preset", "flowpp_cifar10"], "flowpp preset"),
                        (["--model", "flowpp", "--model_set", "filterz=3"], "KEY one of"),
                        (["--model", "flowpp", "--model_set", "filters=a"], "takes a int"),
                        (["--model", "flowpp", "--model_set", "filters=0"], "filters=0"),
                        (["--model", "flowpp", "--gradient_checkpointing", "2"], "recomputes")]:
        with pytest.raises(ValueError, match=match):
            resolve(build_parser().parse_args(argv + ["--problem", "digits"]))


def test_the_warmup_is_the_official_by_steps_or_fractional_epochs():
    hps = resolve(build_parser().parse_args(["--preset", "flowpp_cifar10", "--data_dir", "x"]))
    assert [learning_rate(hps, s, 8) for s in (0, 1000, 2000, 5000)] == [0.0, 1.5e-4, 3e-4, 3e-4]
    half = resolve(build_parser().parse_args(["--problem", "digits", "--epochs_warmup", "0.5"]))
    assert half.epochs_warmup == 0.5 and learning_rate(half, 6, 1) == pytest.approx(
        0.001 * 6 * 64 / 750)
    assert resolve(build_parser().parse_args(["--problem", "digits", "--epochs_warmup",
                                              "2"])).epochs_warmup == 2   # an int stays one


# ---------------------------------------------------------------------- dependability


def test_a_run_logs_validates_with_the_ema_and_resumes_exactly(run_dir, tmp_path):
    logdir, final = run_dir
    tests = [json.loads(l) for l in open(logdir / "test.txt")]
    assert tests[0]["model"] == "flowpp" and tests[0]["family_config"]["filters"] == 8
    assert [t["epoch"] for t in tests[1:]] == [1, 2] and tests[2]["n_images"] == 64
    assert tests[2]["bits_x"] < tests[1]["bits_x"] < 9
    assert len(list(logdir.glob("epoch_1_sample_*.png"))) == 8
    ema, _ = load_trained(str(logdir))
    raw, _ = load_trained(str(logdir), use_polyak=False)
    x = load_numpy("digits", "validation", 8)[0][:8]
    assert np.abs(evaluation.per_image_bits(ema, x).numpy()
                  - evaluation.per_image_bits(raw, x).numpy()).max() > 1e-4
    # Stopped after 5 steps (mid-epoch), resumed to the end: bitwise the uninterrupted run.
    Trainer(fp_hps(tmp_path, "--max_steps", "5", "--ckpt_every", "3")).run()
    resumed = Trainer(fp_hps(tmp_path, "--restore_path", str(tmp_path)))
    resumed.run()
    assert int(resumed.step.numpy()) == 12
    for a, b in zip(final, weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_a_nonfinite_step_stops_and_keeps_the_last_checkpoint(tmp_path):
    trainer = Trainer(fp_hps(tmp_path, "--ckpt_every", "2"))
    real_step = trainer.train_step._fn

    def poisoned(batch, step):
        stats = real_step(batch, step)
        return {**stats, "grad_norm": tf.constant(np.inf)} if int(step) == 3 else stats

    trainer.train_step._fn = poisoned
    with pytest.raises(TrainingDiverged, match="step 3"):
        trainer.run()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert json.load(open(tmp_path / "nonfinite_step3_worker0.json"))["step"] == 3


@pytest.mark.slow
def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one(run_dir, tmp_path):
    logdir, final = run_dir
    args = TINY_FP + ["--logdir", str(tmp_path), "--ckpt_every", "2"]
    proc = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert (tmp_path / "checkpoints" / "ckpt-4.index").exists()  # written, never made current
    resumed = Trainer(fp_hps(tmp_path, "--ckpt_every", "2", "--restore_path", str(tmp_path)))
    resumed.run()
    for a, b in zip(final, weights(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_replicas_equal_one_device_with_the_same_global_batch(tmp_path):
    # Dropout masks, the variational noise, the init batch's statistics and the clipped
    # replica-averaged gradients must all be independent of the split of the batch.
    common = ["--max_steps", "3"]
    Trainer(fp_hps(tmp_path / "one", "--n_batch_train", "32", "--n_batch_init", "32",
                   "--distribute", "none", *common)).run()
    args = TINY_FP + ["--logdir", str(tmp_path / "two"), "--n_batch_train", "16",
                      "--n_batch_init", "16", "--distribute", "mirrored", *common]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=400, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _checkpoint_tensors(tmp_path / "one"), _checkpoint_tensors(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 60
    for name in one:  # rtol: the Norm scales g reach ~70 (1 / std of the init batch)
        np.testing.assert_allclose(one[name], two[name], rtol=1e-5, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------------- evaluate.py, export


def cli(*argv):
    import evaluate

    return evaluate.run(evaluate.build_parser().parse_args([str(a) for a in argv]))


def test_evaluate_reproduces_the_validation_figure_and_weighs_importance(run_dir, tmp_path):
    logdir, _ = run_dir
    last = [json.loads(l) for l in open(logdir / "test.txt")][-1]
    res = cli("--restore_path", logdir, "--logdir", tmp_path, "--n_test", 64,
              "--importance_samples", 3)["eval"]
    assert res["n_images"] == 64 and abs(res["bits_per_dim"] - last["bits_x"]) < 1e-5
    assert res["inversion_error"] < 1e-2 and res["importance_samples"] == 3
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["importance_weighted_bits_per_dim"] == res["importance_weighted_bits_per_dim"]
    # The bound by hand: log-mean-exp of the per-sample log ratios; sample 0 = one sample.
    model = load_trained(str(logdir))[0]
    x = load_numpy("digits", "validation", 8)[0][:6]
    r = np.stack([evaluation.per_image_terms(model, x, sample=s)["log_ratio"].numpy()
                  for s in range(3)]).astype(np.float64)
    by_hand = -np.log(np.mean(np.exp(r - r.max(0)), 0)) / (64 * np.log(2)) - r.max(0) / (64 * np.log(2))
    np.testing.assert_allclose(evaluation.importance_weighted_bits(model, x, 3).numpy(), by_hand,
                               rtol=1e-12)
    np.testing.assert_allclose(evaluation.importance_weighted_bits(model, x, 1).numpy(),
                               evaluation.per_image_bits(model, x).numpy(), atol=1e-5)
    assert not np.allclose(r[0], r[1])


def test_samples_interpolation_and_class_manipulation(run_dir, tmp_path):
    logdir, _ = run_dir
    x = load_numpy("digits", "validation", 8)[0]
    out = cli("--restore_path", logdir, "--logdir", tmp_path, "--sample", 2, "--temperatures",
              "0.5,1", "--interpolate", "--n_interpolate", 1, "--interpolate_steps", 3,
              "--manipulate", "3", "--n_manipulate", 2, "--n_direction", 60, "--alphas=-1,0,1")
    assert out["sample"][1.0].shape == (2, 8, 8, 1) and (tmp_path / "samples_T0.5.png").exists()
    assert out["interpolate"][0].shape == (3, 8, 8, 1)
    strip = sampling.interpolation_strip(load_trained(str(logdir))[0], x[0], x[1], 3)
    assert np.array_equal(strip[0], x[0]) and np.array_equal(strip[-1], x[1])
    grid = out["manipulate"]
    assert np.array_equal(grid[:, 1], x[:2]) and not np.array_equal(grid[:, 2], grid[:, 1])


@pytest.mark.slow
def test_export_round_trips_uint8_images_without_tfglow(run_dir, tmp_path):
    logdir, _ = run_dir
    cli("--restore_path", logdir, "--logdir", tmp_path / "ev", "--export", tmp_path / "sm")
    model = load_trained(str(logdir))[0]
    x = np.concatenate([load_numpy("digits", "validation", 8)[0][:4],
                        np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)])  # every value
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(_NO_TFGLOW + "\nnp.save(sys.argv[3] + '.iw.npy', m.signatures["
                      "'importance_weighted_bits_per_dim'](images=tf.constant(x), "
                      "samples=tf.constant(1))['bits_per_dim'].numpy())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "sm"),
                           str(tmp_path / "x.npy"), str(tmp_path / "out.npz")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "importance_weighted_bits_per_dim" in proc.stdout and proc.stdout.strip().endswith("[]")
    out = np.load(tmp_path / "out.npz")
    assert np.array_equal(out["dec"], x)                       # exact uint8 round trip
    bits = evaluation.per_image_bits(model, x).numpy()   # ~1e3 for the uncommon 0..255 ramps
    np.testing.assert_allclose(out["bpd"], bits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(str(tmp_path / "out.npz") + ".iw.npy"), bits, rtol=1e-5,
                               atol=1e-5)
    assert np.array_equal(out["smp"], model.sample(4, 0.7, seed=1).numpy())


def test_flowpp_model_needs_float32():
    with pytest.raises(ValueError, match="only float32"):
        FlowPP(FlowPPConfig.preset("digits"), precision="mixed_bfloat16")
