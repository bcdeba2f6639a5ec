"""Checkpoints written before the flow steps ran as one loop per level (tfglow.scan) still load,
and the restored model computes what the old code computed for them.

tests/fixtures/glow_v1/ was written by tests/fixtures/make_glow_v1.py with the code of commit
bf0341e (every step traced separately): tiny models' checkpoints and their per-image losses,
gradients of every variable, latents and samples. Restored into models built with a different
seed (so every restored value must come from the file), the current code must reproduce them
in every gradient mode, with the step loop and without, eagerly and in a tf.function.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfglow
from tfglow import stacked
from tfglow.training.checkpoints import restore_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "glow_v1")
NAMES = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))


def restored(name):
    """(model restored from the fixture's checkpoint, expected outputs dict)."""
    d = os.path.join(FIXTURES, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = tfglow.GlowConfig.from_dict(json.load(f))
    model = tfglow.Glow(cfg.replace(seed=cfg.seed + 1))
    # Per-step weights (before tfglow.stacked): converted into the levels' stacked variables.
    assert restore_checkpoint(os.path.join(d, "ckpt"), model) == "per_step"
    expected = dict(np.load(os.path.join(d, "expected.npz")))
    return model, expected


def in_old_order(model, tensors):
    """tensors (one per trainable variable of `model`) as the per-step model's list: one per
    step's variable, in its order (stacked.per_step_layout)."""
    by_id = {id(v): tf.convert_to_tensor(t).numpy()
             for v, t in zip(model.trainable_variables, tensors)}
    return [by_id[id(v)] if row is None else by_id[id(v)][row]
            for v, row in stacked.per_step_layout(model)]


def loss_terms_and_grads(model, x, noise, y):
    with tf.GradientTape() as tape:
        terms = model.loss_terms(x, y, noise=noise)
        loss = tf.reduce_mean(terms["loss"])
    return terms, tape.gradient(loss, model.trainable_variables)


def test_fixture_is_small():
    total = sum(os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(FIXTURES) for f in files)
    assert total < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_restores_every_variable(name):
    model, _ = restored(name)
    assert model.is_initialized
    assert all(float(a.initialized.numpy()) == 1.0 for a in model.actnorm_layers())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("step_loop", [True, False], ids=["loop", "per_step"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_gives_the_old_losses_and_gradients(name, mode, step_loop, compiled):
    model, exp = restored(name)
    model.gradient_checkpointing = mode
    model.step_loop = step_loop
    fn = tf.function(loss_terms_and_grads, autograph=False) if compiled else loss_terms_and_grads
    terms, grads = fn(model, exp["x"], exp["noise"], exp.get("y"))
    for key in ("loss", "bits_x", "bits_y", "pred_error"):
        np.testing.assert_allclose(terms[key].numpy(), exp[f"terms_{key}"], rtol=1e-6, atol=1e-6,
                                   err_msg=key)
    old_grads = in_old_order(model, grads)
    assert len(old_grads) == len([k for k in exp if k.startswith("grad_")])
    for i, g in enumerate(old_grads):
        ref = exp[f"grad_{i}"]
        err = np.abs(g - ref).max() / max(np.abs(ref).max(), 1e-30)
        # Mode 2 reconstructs inputs by the inverses (tests/test_memory.py bounds it).
        assert err <= (2e-5 if mode == 2 else 1e-5), (i, err)


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_gives_the_old_latents_and_samples(name):
    model, exp = restored(name)
    cfg = model.config
    y = exp.get("y")
    zs = model.encode(model.preprocess(exp["x"]) + 0.5 / cfg.n_bins, y)
    for i, z in enumerate(zs):
        np.testing.assert_allclose(z.numpy(), exp[f"z_{i}"], atol=1e-5)
    n = len(exp["x"])
    np.testing.assert_array_equal(model.sample(n, temperature=0.0, y=y).numpy(), exp["sample_t0"])
    sample = model.sample(n, temperature=0.7, y=y, seed=11).numpy().astype(int)
    assert np.abs(sample - exp["sample_t07"]).max() <= 1


# --------------------------------------------------------------- optimizer slots (optim_v1)
# tests/fixtures/optim_v1 (tests/fixtures/make_optim_v1.py, code of commit bad0970): a run
# whose checkpoint holds one optimizer slot variable per variable, before tfglow.optim stacked
# the slots by shape.
OPTIM_V1 = os.path.join(os.path.dirname(FIXTURES), "optim_v1")
OPTIM_V1_FLAGS = ["--problem", "digits", "--depth", "1", "--width", "8", "--n_train", "96",
                  "--n_batch_train", "16", "--n_batch_init", "32", "--epochs_full_sample",
                  "1000", "--no_progress", "--deterministic", "--n_test", "32",
                  "--ckpt_every", "3", "--epochs_full_valid", "1000"]


def _old_run(tmp_path, *extra):
    import shutil

    from tfglow.training.hparams import build_parser, resolve
    from tfglow.training.trainer import Trainer

    run = str(tmp_path / "run")
    shutil.copytree(os.path.join(OPTIM_V1, "run"), run)
    hps = resolve(build_parser().parse_args(
        OPTIM_V1_FLAGS + ["--logdir", run, "--restore_path", run] + list(extra)))
    return Trainer(hps), run


def test_old_optimizer_slots_are_converted_on_resume(tmp_path):
    trainer, run = _old_run(tmp_path, "--max_steps", "4")
    trainer.restore(run)
    exp = np.load(os.path.join(OPTIM_V1, "expected.npz"))
    opt = trainer.optimizer
    assert int(opt.iterations.numpy()) == int(trainer.step.numpy()) == 3
    variables = opt._trainable_variables
    weights = in_old_order(trainer.model, variables)
    assert len(weights) == len([k for k in exp if k.startswith("w_")])
    for i, w in enumerate(weights):
        np.testing.assert_array_equal(w, exp[f"w_{i}"])
    for name in ("m1", "m2", "polyak"):
        slots = in_old_order(trainer.model, opt.slots(name, variables))
        for i, slot in enumerate(slots):
            np.testing.assert_array_equal(slot, exp[f"{name}_{i}"], err_msg=f"{name} {i}")
    trainer.run()  # and training goes on from there
    assert int(trainer.step.numpy()) == 4


def test_old_optimizer_slots_give_the_old_polyak_weights(tmp_path):
    from tfglow.training.checkpoints import load_trained

    model, _ = load_trained(os.path.join(OPTIM_V1, "run"))
    exp = np.load(os.path.join(OPTIM_V1, "expected.npz"))
    weights = in_old_order(model, model.trainable_variables)
    for i, w in enumerate(weights):
        np.testing.assert_array_equal(w, exp[f"loaded_{i}"])
    # the average differs from the raw weights, so this is the converted Polyak slot
    assert not all(np.array_equal(exp[f"loaded_{i}"], exp[f"w_{i}"])
                   for i in range(len(weights)))


def test_old_slots_of_another_model_are_refused():
    from tfglow.optim import make_optimizer

    model = tfglow.Glow(tfglow.GlowConfig(image_size=8, n_levels=2, depth=2, width=4,
                                          n_channels=1))
    model(tf.zeros([1, 8, 8, 1], tf.uint8))
    opt = make_optimizer("adamax", train_its=6)
    opt.build(model.trainable_variables)
    ckpt = os.path.join(OPTIM_V1, "run", "checkpoints", "ckpt-3")
    with pytest.raises(ValueError, match="do not match this model"):
        opt.restore_slots_from(ckpt)
    with pytest.raises(ValueError, match="per-step checkpoint lacks model/level0_step1/"):
        restore_checkpoint(ckpt, model, opt)


# --------------------------------------------------------------- per-step weights (glow_v2)
# tests/fixtures/glow_v2 (tests/fixtures/make_glow_v2.py, code of commit 4645345): a model and
# Adamax checkpoint with one variable per flow step and the slots stacked by shape over them,
# before tfglow.stacked.
GLOW_V2 = os.path.join(os.path.dirname(FIXTURES), "glow_v2")


def test_per_step_checkpoint_with_stacked_slots_resumes_exactly():
    from tfglow.optim import make_optimizer

    with open(os.path.join(GLOW_V2, "config.json")) as f:
        cfg = tfglow.GlowConfig(**json.load(f))
    exp = np.load(os.path.join(GLOW_V2, "expected.npz"))
    model = tfglow.Glow(cfg.replace(seed=cfg.seed + 1))  # every value must come from the file
    optimizer = make_optimizer("adamax", lr=1e-2, train_its=10)
    optimizer.build(model.trainable_variables)
    assert restore_checkpoint(os.path.join(GLOW_V2, "ckpt"), model, optimizer) == "per_step"
    assert int(optimizer.iterations.numpy()) == int(exp["iterations"]) == 2
    variables = model.trainable_variables
    n_old = len([k for k in exp.files if k.startswith("w_")])
    assert len(variables) < n_old  # the steps' variables are stacked now
    for i, w in enumerate(in_old_order(model, variables)):
        np.testing.assert_array_equal(w, exp[f"w_{i}"])
    for name in ("m1", "m2", "polyak"):
        for i, slot in enumerate(in_old_order(model, optimizer.slots(name, variables))):
            np.testing.assert_array_equal(slot, exp[f"{name}_{i}"], err_msg=f"{name} {i}")
    # One more step gives the old code's loss and weights.
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss_terms(exp["x"], noise=exp["noise"])["loss"])
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    np.testing.assert_allclose(float(loss), float(exp["next_loss"]), rtol=1e-6)
    for i, w in enumerate(in_old_order(model, variables)):
        np.testing.assert_allclose(w, exp[f"next_w_{i}"], rtol=1e-5, atol=1e-6,
                                   err_msg=str(i))


def test_per_variable_slots_fill_an_optimizer_of_the_same_variables():
    """restore_slots_from: the per-variable slot layout into any model's variables (here
    plain variables in the order and shapes of optim_v1's model)."""
    import keras

    from tfglow.optim import make_optimizer

    exp = np.load(os.path.join(OPTIM_V1, "expected.npz"))
    n = len([k for k in exp.files if k.startswith("w_")])
    variables = [keras.Variable(exp[f"w_{i}"]) for i in range(n)]
    opt = make_optimizer("adamax", train_its=6)
    opt.build(variables)
    assert opt.restore_slots_from(os.path.join(OPTIM_V1, "run", "checkpoints", "ckpt-3"))
    for name in ("m1", "m2", "polyak"):
        for i, slot in enumerate(opt.slots(name, variables)):
            np.testing.assert_array_equal(slot.numpy(), exp[f"{name}_{i}"], err_msg=f"{name} {i}")
