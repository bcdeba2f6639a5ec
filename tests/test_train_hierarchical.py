"""train.py --model hierarchical: hflow's training in the shared trainer. Flags and defaults,
the three learning-rate groups (checked on the first Adam step by hand), micro-batch
accumulation, the encoder freeze, the EMA (a copy in epoch 0, then 0.995), exact resume and the
non-finite stop; validation (its last batch a single image), samples and level-of-detail grids
per epoch; evaluate.py on the run (the bound with its per-level terms, per-latent temperatures,
the level-of-detail grid, FID with a small Keras feature model). ONE tiny run (digits padded
to 16x16, the digits16 preset, batch 4 as 2 micro-batches of 2, 3 steps per epoch) in one
process is shared by the module: the compiled step is traced once."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from test_train import MIRRORED, ROOT, _checkpoint_tensors, weights
from tfglow.evaluation import evaluate_split
from tfglow.hierarchical import HierarchicalConfig, schedule
from tfglow.training.hparams import build_parser, resolve
from tfglow.training.trainer import Trainer, TrainingDiverged

TINY_H = ["--model", "hierarchical", "--problem", "digits", "--n_train", "12",
          "--n_batch_train", "4", "--grad_accum", "2", "--n_batch_init", "4", "--epochs", "2",
          "--freeze_encoder_epoch", "1", "--ckpt_every", "2", "--epochs_full_valid", "1",
          "--n_test", "5", "--n_batch_test", "4", "--epochs_full_sample", "1",
          "--no_progress", "--deterministic"]
STEPS_PER_EPOCH = 3


def h_hps(logdir, *extra):
    """The digits16 preset with one flow step per level and per end flow (K = 1: every kind
    of part, S2 U-Net and C couplings, decoders with style, the end block; half the graph)."""
    hps = resolve(build_parser().parse_args(TINY_H + ["--logdir", str(logdir), *extra]))
    hps.family_config.update(num_layers=[1, 1], splits=["S2", "C"], end_layers=[1, 1])
    hps.model_config()  # still a valid config
    return hps


def _trainable(trainer):
    return [v.numpy() for v in trainer.model.trainable_variables]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The shared run: 2 epochs x 3 steps, with the weights and EMA recorded after the init and
    after every step; then resumed in the same process from the step-4 checkpoint (mid epoch
    2), then poisoned at step 7 of a third epoch."""
    logdir = tmp_path_factory.mktemp("hierarchical") / "run"
    trainer = Trainer(h_hps(logdir))
    record = {"after_init": None, "steps": []}
    real_init, real_step = trainer.initialize, trainer.train_step._fn

    def initialize():
        real_init()
        record["after_init"] = _trainable(trainer)
        record["init_bound"] = evaluate_split(trainer.model, "digits", "validation", 4,
                                              seed=trainer.hps.seed, max_images=5)["bits_x"]

    def step_fn(batch, step):
        stats = real_step(batch, step)
        record["steps"].append((_trainable(trainer),
                                [v.numpy() for v in trainer.optimizer.polyak.averages]))
        return stats

    trainer.initialize, trainer.train_step._fn = initialize, step_fn
    trainer.run()
    record["straight"] = weights(trainer)
    record["groups"] = schedule.variable_groups(trainer.model, trainer.model.trainable_variables)
    return trainer, logdir, record


# ---------------------------------------------------------------------- flags


def test_flags_take_hflow_training_and_the_digits16_preset():
    hps = resolve(build_parser().parse_args(["--model", "hierarchical", "--problem", "digits"]))
    assert hps.model_config() == HierarchicalConfig.preset("digits16")
    assert (hps.image_size, hps.n_channels, hps.anchor_size, hps.local_batch_train,
            hps.grad_accum, hps.optimizer, hps.lr, hps.beta2, hps.grad_clip, hps.ema_decay,
            hps.ema_copy_epochs, hps.freeze_encoder_epoch, hps.warmup_steps,
            hps.epochs_warmup, hps.local_batch_init) == (
        16, 1, 16, 16, 4, "adam", 5e-3, 0.999, 50.0, 0.995, 1, 60, 0, 0, 64)
    cpu32 = resolve(build_parser().parse_args(["--preset", "hierarchical_cpu32",
                                               "--data_dir", "x"]))
    assert cpu32.model == "hierarchical" and cpu32.model_config() == \
        HierarchicalConfig.preset("cpu32")
    glow = resolve(build_parser().parse_args(["--problem", "digits"]))
    assert (glow.n_batch_train, glow.grad_accum, glow.ema_copy_epochs,
            glow.freeze_encoder_epoch, glow.image_size) == (64, 1, 0, None, 8)
    for argv, match in [(["--model", "hierarchical", "--n_batch_train", "4", "--grad_accum",
                          "4"], "--grad_accum=4.*>= 2 images"),
                        (["--model", "hierarchical", "--grad_accum", "3"], "--grad_accum=3"),
                        (["--freeze_encoder_epoch", "3"], "--freeze_encoder_epoch"),
                        (["--model", "hierarchical", "--gradient_checkpointing", "2"],
                         "recomputes")]:
        with pytest.raises(ValueError, match=match):
            resolve(build_parser().parse_args(argv + ["--problem", "digits"]))


def test_the_schedule_is_hflows():
    assert [schedule.decays(e) for e in (0, 10, 11, 12, 13, 14, 20)] == [0, 0, 0, 1, 1, 2, 5]
    flows, decoders, encoders = schedule.group_scales(14, 60)
    assert (flows, decoders, encoders) == pytest.approx((0.95 ** 2, 0.4 * 0.95 ** 2,
                                                         0.1 * 0.92 ** 2))
    assert schedule.group_scales(60, 60)[2] == 0.0 and schedule.group_scales(59, 60)[2] > 0
    assert schedule.group_scales(500, -1)[2] > 0


# ---------------------------------------------------------------------- the run


def test_each_group_takes_its_learning_rate_on_the_first_step(run):
    # Adam's first step: w1 - w0 = -lr_g * g / (|g| + eps / sqrt(1 - beta2)), so |dw| <= lr_g
    # with equality up to 1e-3 wherever |g| >> 3e-7 (clipping scales g, not its sign).
    trainer, _, record = run
    w0, (w1, _) = record["after_init"], record["steps"][0]
    seen = {}
    for g, a, b in zip(record["groups"], w0, w1):
        seen.setdefault(g, []).append(np.abs(b - a).ravel())
    for g, name in enumerate(schedule.GROUPS):
        step = np.concatenate(seen[g])
        lr = 5e-3 * schedule.LEARNING_RATES[name] / schedule.LEARNING_RATES["flows"]
        assert step.max() == pytest.approx(lr, rel=1e-3), name
        assert np.all(step <= lr * (1 + 1e-3)), name
        assert np.mean(step > 0.9 * lr) > 0.5, name  # most weights moved by the full lr


def test_the_encoders_freeze_from_the_given_epoch_and_the_rest_trains_on(run):
    _, _, record = run
    groups, steps = record["groups"], [w for w, _ in record["steps"]]
    enc = [i for i, g in enumerate(groups) if schedule.GROUPS[g] == "encoders"]
    flows = [i for i, g in enumerate(groups) if schedule.GROUPS[g] == "flows"]
    end_of_epoch1 = steps[STEPS_PER_EPOCH - 1]
    assert any(not np.array_equal(end_of_epoch1[i], record["after_init"][i]) for i in enc)
    for later in steps[STEPS_PER_EPOCH:2 * STEPS_PER_EPOCH]:
        assert all(np.array_equal(later[i], end_of_epoch1[i]) for i in enc)
    assert any(not np.array_equal(steps[-1][i], end_of_epoch1[i]) for i in flows)


def test_the_ema_copies_the_weights_in_epoch_0_then_decays_by_0995(run):
    _, _, record = run
    for w, avg in record["steps"][:STEPS_PER_EPOCH]:
        assert all(np.array_equal(a, b) for a, b in zip(w, avg))
    one_minus = np.float32(1.0) - np.float32(0.995)
    for (_, prev), (w, avg) in zip(record["steps"][STEPS_PER_EPOCH - 1:],
                                   record["steps"][STEPS_PER_EPOCH:]):
        for p, wi, a in zip(prev, w, avg):
            np.testing.assert_allclose(a, p - (p - wi) * one_minus, rtol=1e-6, atol=1e-9)
        assert any(not np.array_equal(a, wi) for a, wi in zip(avg, w))


def test_accumulated_micro_batches_equal_one_step_on_their_concatenation_without_noise(run):
    # The encoder noise scale is a statistic of each micro-batch (hflow: of its 4 images), so
    # with the noise on, 2 micro-batches of 2 are NOT one batch of 4 (as in hflow); with every
    # alpha and the data noise at 0 the loss is a mean of per-image terms (instance norm only)
    # and the two must agree.
    trainer, _, _ = run
    model, step = trainer.model, trainer.train_step
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), np.uint8))
    y, seed = tf.zeros([4], tf.int32), tf.constant([3, 4], tf.int32)
    noise = model.draw_noise(tf.shape(x), [1, 2])
    config = model.config
    try:
        model.config = config.replace(flow_noise=(0.0,), decoder_noise=(0.0,),
                                      end_flow_noise=(0.0, 0.0), end_decoder_noise=(0.0, 0.0),
                                      data_noise_std=0.0)
        stats_a, grads_a = step.accumulated_grads(x, y, noise, seed)
        stats_b, grads_b = step.loss_and_grads(x, y, noise, seed)
        assert stats_a["loss"].numpy() == pytest.approx(stats_b["loss"].numpy(), rel=1e-5)
        for a, b in zip(grads_a, grads_b):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    finally:
        model.config = config


def test_resume_is_exact_and_a_nonfinite_step_keeps_the_last_checkpoint(run):
    trainer, logdir, record = run
    ckpts = str(logdir / "checkpoints")
    assert tf.train.latest_checkpoint(ckpts).endswith("ckpt-6")
    trainer.hps.restore_path = f"{ckpts}/ckpt-4"  # mid epoch 2: steps 4 and 5 again
    trainer.run()
    assert all(np.array_equal(a, b) for a, b in zip(weights(trainer), record["straight"]))

    real_step = trainer.train_step._fn

    def poisoned(batch, step):
        stats = real_step(batch, step)
        return {**stats, "loss": tf.constant(np.nan)} if int(step) == 7 else stats

    trainer.train_step._fn = poisoned
    trainer.hps.restore_path, trainer.hps.restore_if_exists, trainer.hps.epochs = "", True, 3
    with pytest.raises(TrainingDiverged, match="step 7"):
        trainer.run()
    assert tf.train.latest_checkpoint(ckpts).endswith("ckpt-6")  # none written at 7
    report = json.load(open(logdir / "nonfinite_step7_worker0.json"))
    assert report["step"] == 7 and report["last_checkpoint"].endswith("ckpt-6")
    batch = np.load(logdir / "nonfinite_step7_worker0.npz")
    assert batch["x"].shape == (4, 16, 16, 1) and batch["x"].max() > 0


# ---------------------------------------------------------------------- outputs and evaluate.py


def test_the_bound_falls_and_samples_and_detail_grids_are_written(run):
    trainer, logdir, record = run
    tests = [json.loads(line) for line in open(logdir / "test.txt")][1:]
    assert [t["epoch"] for t in tests][:2] == [1, 2]
    assert all(t["n_images"] == 5 and np.isfinite(t["bits_x"]) for t in tests)
    assert tests[0]["bits_x"] < record["init_bound"] - 0.05, (record["init_bound"], tests)
    for epoch in (1, 2):
        assert (logdir / f"epoch_{epoch}_sample_0.png").exists()
        lod = np.asarray(Image.open(logdir / f"epoch_{epoch}_lod.png"))
        levels = len(trainer.model.latent_shapes) - 1  # rows: 2 images x kept levels
        cell = 2 * 16 + 1                                # 16 px at scale 2, 1 px padding
        assert lod.shape[:2] == (2 * levels * cell - 1, 6 * cell - 1)


def test_validation_is_seeded_by_the_images_and_a_last_single_image_rides_behind(run):
    trainer, _, _ = run
    from tfglow.data import load_numpy
    from tfglow.evaluation import per_image_terms

    model = trainer.model
    a = evaluate_split(model, "digits", "validation", 4, seed=0, max_images=5)
    b = evaluate_split(model, "digits", "validation", 4, seed=0, max_images=5)
    assert a == b and a["n_images"] == 5 and np.isfinite(a["bits_x"])
    images = tf.constant(load_numpy("digits", "validation", 16)[0][:5])
    first = per_image_terms(model, images[:4], seed=0)["bits_x"].numpy()
    tail = per_image_terms(model, images, seed=0)["bits_x"].numpy()[-1]  # behind 0..3
    assert a["bits_x"] == pytest.approx((first.astype(np.float64).sum() + tail) / 5, rel=1e-6)


def _trained(logdir):
    """The run's last checkpoint with its EMA weights, as evaluate.py loads it (the shared
    trainer's own weights may have moved on: the non-finite test steps past it)."""
    from tfglow.training.checkpoints import load_trained, resolve_checkpoint
    return load_trained(resolve_checkpoint(str(logdir)), use_polyak=True)[0]


def _evaluate(logdir, *flags):
    import evaluate
    return evaluate.run(evaluate.build_parser().parse_args(
        ["--restore_path", str(logdir), "--logdir", str(logdir / "eval"), *flags]))


def test_evaluate_writes_the_bound_with_its_per_level_terms(run):
    trainer, logdir, _ = run
    result = _evaluate(logdir, "--n_test", "5", "--n_batch_test", "4",
                       "--importance_samples", "2")["eval"]
    saved = json.load(open(logdir / "eval" / "eval.json"))
    cfg = trainer.model.config
    names = [f"bits_{r}" for r in cfg.resolutions] + ["bits_prior", "bits_1"]
    dims = [int(np.prod(s)) for s in cfg.latent_shapes[:-1]] + [
        cfg.prior_channels, cfg.end_channels - cfg.prior_channels]
    # bits_x = sum_i bits_i D_i / D + 8 (the ELBO's terms; 8 bits of the uniform dequantisation)
    assert saved["bits_x"] == pytest.approx(
        sum(saved[n] * d for n, d in zip(names, dims)) / cfg.n_dims + 8.0, rel=1e-5)
    assert saved["bits_per_dim"] == result["bits_per_dim"] and saved["n_images"] == 5
    assert np.isfinite(saved["importance_weighted_bits_per_dim"])
    assert saved["inversion_error"] < 1e-4


def test_evaluate_samples_at_per_latent_temperatures_and_writes_the_detail_grid(run, capsys):
    import evaluate
    from tfglow.sampling import sample_images

    trainer, logdir, _ = run
    n = len(trainer.model.latent_shapes)
    per_latent = "/".join(["0.5"] * (n - 1) + ["1"])
    results = _evaluate(logdir, "--sample", "3", "--temperatures", f"0.7,{per_latent}",
                        "--lod", "--n_lod", "2", "--lod_variations", "2")
    out = logdir / "eval"
    assert (out / "samples_T0.7.png").exists()
    assert (out / f"samples_T{per_latent.replace('/', '-')}.png").exists()
    # a plain T is every level at T and the 1x1 latent at 1 (hflow)
    grids = results["sample"]
    tuple_t = tuple([0.7] * (n - 1) + [1.0])
    np.testing.assert_array_equal(grids[0.7], sample_images(_trained(logdir), 3, tuple_t))
    cells = results["lod"]
    assert cells.shape == (2 * (n - 1), 3, 16, 16, 1) and (out / "lod.png").exists()
    images = cells[::n - 1, 0]
    assert np.array_equal(cells[:n - 1, 0], np.repeat(images[:1], n - 1, 0))
    assert not np.array_equal(cells[:, 1], cells[:, 2])  # variations differ
    code = evaluate.main(["--restore_path", str(logdir), "--sample", "2",
                          "--temperatures", "0.5/1"])
    assert code == 2 and "--temperatures: '0.5/1' gives 2 temperatures" in capsys.readouterr().err


def test_evaluate_fid_with_a_keras_feature_model(run, tmp_path, capsys):
    import keras

    import evaluate
    from tfglow.data import load_numpy
    from tfglow.fid import KerasFeatures, fid_from_features
    from tfglow.sampling import sample_images

    trainer, logdir, _ = run
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    features = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
    path = tmp_path / "features.keras"
    features.save(path)
    result = _evaluate(logdir, "--fid", "12", "--fid_weights", str(path),
                       "--fid_temperature", "0.6")["fid"]
    assert json.load(open(logdir / "eval" / "fid.json"))["fid"] == result["fid"]
    real = load_numpy("digits", "train", 16)[0][:12]
    fake = sample_images(_trained(logdir), 12, 0.6)
    extractor = KerasFeatures(features)
    assert result["fid"] == pytest.approx(fid_from_features(extractor(real), extractor(fake)),
                                          rel=1e-6)
    assert result["fid"] > 0 and result["n_real"] == 12
    code = evaluate.main(["--restore_path", str(logdir), "--fid", "12"])
    assert code == 2 and "--fid_weights" in capsys.readouterr().err


def test_export_serves_the_hierarchical_model(run, tmp_path):
    from tfglow import evaluation
    from tfglow.data import load_numpy

    _, logdir, _ = run
    _evaluate(logdir, "--export", str(tmp_path / "sm"))
    m, model = tf.saved_model.load(str(tmp_path / "sm")), _trained(logdir)
    assert "importance_weighted_bits_per_dim" in m.signatures
    x = tf.constant(load_numpy("digits", "validation", 16)[0][:4])
    zs = m.signatures["encode"](images=x)
    assert np.array_equal(m.signatures["decode"](**zs)["images"].numpy(), x.numpy())
    np.testing.assert_allclose(m.signatures["bits_per_dim"](images=x)["bits_per_dim"],
                               evaluation.per_image_bits(model, x), rtol=1e-5)
    served = m.signatures["sample_seeded"](n=tf.constant(3), temperature=tf.constant(0.6),
                                           seed=tf.constant(5))["images"]
    np.testing.assert_array_equal(served, model.sample(3, 0.6, seed=5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="give >= 2 images"):
        m.signatures["bits_per_dim"](images=x[:1])


@pytest.mark.slow
def test_two_replicas_equal_one_device_with_the_encoder_noise_off(tmp_path):
    # With the noise on, each replica scales its encoder noise by its own batch's sigma (as
    # hflow's DistributedDataParallel); off, everything else (the dequantisation noise rows,
    # the init batch's statistics, the averaged and clipped gradients, the three groups, the
    # EMA) must not depend on the split of the batch. Adam's first steps are +-lr wherever
    # |g| >> eps, also where g is round-off (behind zero-initialised layers), so at the usual lr
    # such weights flip sign between runs; at lr 1e-7 the weights show the init and the
    # optimizer's moments (0.1 g, 0.001 g^2, lr-free) show the gradients.
    tiny = ["--model_set", "num_layers=1,1", "splits=S2,C", "end_layers=1,1", "flow_noise=0",
            "decoder_noise=0", "end_flow_noise=0,0", "end_decoder_noise=0,0",
            "data_noise_std=0"]
    common = TINY_H + ["--grad_accum", "1", "--max_steps", "2", "--lr", "1e-7",
                       "--epochs_full_valid", "1000", "--epochs_full_sample", "1000", *tiny]
    one = resolve(build_parser().parse_args(common + [
        "--logdir", str(tmp_path / "one"), "--n_batch_train", "8", "--n_batch_init", "8",
        "--distribute", "none"]))
    Trainer(one).run()
    args = common + ["--logdir", str(tmp_path / "two"), "--n_batch_train", "4",
                     "--n_batch_init", "4", "--distribute", "mirrored"]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _checkpoint_tensors(tmp_path / "one"), _checkpoint_tensors(tmp_path / "two")
    assert a.keys() == b.keys()
    # the weights, and Adam's moments and the EMA (one stacked slot per shape and kind)
    slots = [k for k in a if "stacked_slot" in k]
    assert len(a) - len(slots) > 200 and len(slots) > 30
    for name in a:
        scale = float(np.abs(a[name]).max()) if a[name].size else 0.0
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5 * max(scale, 1.0),
                                   err_msg=name)
