"""train.py --model hierarchical: hflow's training in the shared trainer. Flags and defaults,
the three learning-rate groups (checked on the first Adam step by hand), micro-batch
accumulation, the encoder freeze, the EMA (a copy in epoch 0, then 0.995), exact resume and the
non-finite stop. ONE tiny run (digits padded to 16x16, the digits16 preset, batch 4 as 2
micro-batches of 2, 3 steps per epoch) in one process is shared by the module: the compiled
step is traced once, so the module stays within a minute on 2 cores."""
import json

import numpy as np
import pytest
import tensorflow as tf

from test_train import weights
from tfglow.hierarchical import HierarchicalConfig, schedule
from tfglow.training.hparams import build_parser, resolve
from tfglow.training.trainer import Trainer, TrainingDiverged

TINY_H = ["--model", "hierarchical", "--problem", "digits", "--n_train", "12",
          "--n_batch_train", "4", "--grad_accum", "2", "--n_batch_init", "4", "--epochs", "2",
          "--freeze_encoder_epoch", "1", "--ckpt_every", "2", "--epochs_full_valid", "1000",
          "--epochs_full_sample", "1000", "--no_progress", "--deterministic"]
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

    def step_fn(batch, step):
        stats = real_step(batch, step)
        record["steps"].append((_trainable(trainer),
                                [v.numpy() for v in trainer.optimizer.polyak.variables]))
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
