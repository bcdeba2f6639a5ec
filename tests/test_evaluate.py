"""evaluate.py, tfglow.evaluation and tfglow.sampling on tiny trained-like runs (digits, 8x8x1)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import evaluate
import tfglow
from tfglow import evaluation, sampling
from tfglow.data import load_numpy
from tfglow.training.checkpoints import load_trained, write_hparams

SMALL = dict(image_size=8, n_channels=1, n_levels=2, depth=2, width=16, flow_permutation=2,
             flow_coupling=1, learntop=True, n_y=10)


def make_run(logdir, steps=2, lr=0.01, **overrides):
    """A train.py-like run directory: hparams.json + checkpoints/ckpt-1 after `steps` Adamax
    steps on digits, so the Polyak averages differ from the raw weights. Returns the model
    (raw weights). Replace with the trainer's real output when it lands."""
    from tfglow.optim import make_optimizer

    cfg = tfglow.GlowConfig(**{**SMALL, **overrides})
    images, labels = load_numpy("digits", "train", cfg.image_size)[:2]
    model = tfglow.Glow(cfg)
    model.initialize(images[:128], labels[:128])
    optimizer = make_optimizer("adamax", lr=lr, train_its=10)
    optimizer.build(model.trainable_variables)
    params = model.trainable_variables
    for s in range(steps):
        x, y = images[64 * s:64 * (s + 1)], labels[64 * s:64 * (s + 1)]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, y if cfg.ycond else None, seed=[s, 0])["loss"])
        optimizer.apply(tape.gradient(loss, params), params)
    write_hparams(logdir, {**cfg.to_dict(), "problem": "digits", "data_dir": "digits",
                           "optimizer": "adamax", "lr": lr, "beta1": 0.9})
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                               os.path.join(logdir, "checkpoints"), 3).save()
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("run"))
    make_run(d)
    return d


@pytest.fixture(scope="module")
def ycond_run(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("run_ycond"))
    make_run(d, ycond=True, flow_coupling=0, weight_y=0.01)
    return d


@pytest.fixture(scope="module")
def trained(run_dir):
    return load_trained(run_dir)[0]


@pytest.fixture(scope="module")
def val():
    return load_numpy("digits", "validation", 8)[:2]


def cli(*argv):
    return evaluate.run(evaluate.build_parser().parse_args([str(a) for a in argv]))


# ----------------------------------------------------------------------------- bits/dim

def test_polyak_weights_differ_from_raw(run_dir, val):
    ema, _ = load_trained(run_dir, use_polyak=True)
    raw, _ = load_trained(run_dir, use_polyak=False)
    x = val[0][:16]
    a = evaluation.per_image_bits(ema, x).numpy()
    b = evaluation.per_image_bits(raw, x).numpy()
    assert np.all(np.isfinite(a)) and np.abs(a - b).max() > 1e-4


def test_split_bits_equal_mean_of_one_by_one(trained, val):
    images, labels = val
    n = len(images)
    r50 = evaluation.evaluate_split(trained, "digits", "validation", batch_size=50)
    r64 = evaluation.evaluate_split(trained, "digits", "validation", batch_size=64)
    assert r50["n_images"] == r64["n_images"] == n == 297       # 297 = 5*50 + 47: no drops
    terms = evaluation.compiled_terms(trained, seed=0)
    one_by_one = [terms(images[i:i + 1], labels[i:i + 1])["bits_x"].numpy()[0] for i in range(n)]
    assert abs(one_by_one[5] - evaluation.per_image_bits(trained, images[5:6]).numpy()[0]) < 1e-6
    assert abs(r50["bits_per_dim"] - np.mean(np.float64(one_by_one))) < 1e-5
    assert abs(r64["bits_per_dim"] - r50["bits_per_dim"]) < 1e-5
    again = evaluation.evaluate_split(trained, "digits", "validation", batch_size=50)
    assert again["bits_per_dim"] == r50["bits_per_dim"]
    part = evaluation.evaluate_split(trained, "digits", "validation", batch_size=50, max_images=60)
    assert part["n_images"] == 60
    assert abs(part["bits_per_dim"] - np.mean(np.float64(one_by_one[:60]))) < 1e-5


def test_noise_depends_only_on_the_image(val):
    x = val[0][:6]
    a = evaluation.dequantization_noise(x).numpy()
    b = evaluation.dequantization_noise(x[::-1]).numpy()[::-1]
    assert np.array_equal(a, b) and 0.0 <= a.min() and a.max() < 1.0
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, evaluation.dequantization_noise(x, seed=1).numpy())


def test_cli_eval_json(run_dir, tmp_path):
    out = tmp_path / "ev"
    res = cli("--restore_path", run_dir, "--logdir", out, "--n_batch_test", 100)["eval"]
    saved = json.loads((out / "eval.json").read_text())
    assert saved["n_images"] == 297 and saved["weights"] == "polyak"
    assert saved["config"]["depth"] == SMALL["depth"] and saved["split"] == "validation"
    assert abs(saved["bits_per_dim"] - res["bits_per_dim"]) < 1e-12
    assert "data" in saved and "manifest" in saved
    raw = cli("--restore_path", run_dir, "--logdir", tmp_path / "raw", "--no_ema")["eval"]
    assert raw["weights"] == "raw" and raw["bits_per_dim"] != res["bits_per_dim"]


def test_main_reports_config_mismatch(run_dir, capsys):
    code = evaluate.main(["--restore_path", run_dir, "--depth", "4", "--width", "16",
                          "--learntop"])
    err = capsys.readouterr().err
    assert code == 2 and "depth: run 2 vs flag 4" in err
    assert "width" not in err and "learntop" not in err


def test_config_differences():
    h = {"depth": 8, "width": 64, "ycond": False, "weight_y": 0.0}
    assert evaluate.config_differences(h, {"depth": 8, "width": None, "weight_y": 0}) == {}
    assert evaluate.config_differences(h, {"depth": 4, "ycond": True}) == {
        "depth": (8, 4), "ycond": (False, True)}


# ----------------------------------------------------------------------------- sampling

def test_temperature_grids_are_seeded(trained):
    a = sampling.temperature_grids(trained, 4, [0.0, 0.7], seed=3)
    b = sampling.temperature_grids(trained, 4, [0.0, 0.7], seed=3)
    c = sampling.temperature_grids(trained, 4, [0.7], seed=4)
    assert a[0.7].shape == (4, 8, 8, 1) and a[0.7].dtype == np.uint8
    assert np.array_equal(a[0.7], b[0.7]) and not np.array_equal(a[0.7], c[0.7])
    assert (a[0.0] == a[0.0][:1]).all()           # T = 0: every sample is decode(0)


def test_cli_sample_pngs(run_dir, ycond_run, tmp_path):
    from PIL import Image

    cli("--restore_path", run_dir, "--logdir", tmp_path, "--sample", 5, "--temperatures", "0.5,1")
    assert (tmp_path / "samples_T0.5.png").exists() and (tmp_path / "samples_T1.png").exists()
    grids = cli("--restore_path", ycond_run, "--logdir", tmp_path / "y", "--sample", 3,
                "--temperatures", "0.7")["sample"]
    assert grids[0.7].shape == (30, 8, 8, 1)       # one row of 3 per class
    h, w = np.asarray(Image.open(tmp_path / "y" / "samples_T0.7.png")).shape[:2]
    assert (h + 1) // 33 == 10 and (w + 1) // 33 == 3   # cells of 32 px + 1 px padding


# ----------------------------------------------------------------------------- interpolation

def test_interpolate_is_linear_at_every_level():
    za = [np.zeros((1, 2, 2, 3)), np.ones((4, 4, 1))]
    zb = [np.ones((2, 2, 3)), 3 * np.ones((1, 4, 4, 1))]
    path = sampling.interpolate(za, zb, 5)
    assert path[0].shape == (5, 2, 2, 3) and path[1].shape == (5, 4, 4, 1)
    np.testing.assert_allclose(path[0][:, 0, 0, 0], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(path[1][2], 2.0)
    with pytest.raises(ValueError, match="n_steps"):
        sampling.interpolate(za, zb, 1)


def test_interpolation_strip_ends_are_exact(trained, val, run_dir, tmp_path):
    x = val[0]
    strip = sampling.interpolation_strip(trained, x[0], x[1], 6)
    assert strip.shape == (6, 8, 8, 1)
    assert np.array_equal(strip[0], x[0]) and np.array_equal(strip[-1], x[1])
    strips = cli("--restore_path", run_dir, "--logdir", tmp_path, "--interpolate",
                 "--n_interpolate", 2, "--interpolate_steps", 4)["interpolate"]
    assert len(strips) == 2 and (tmp_path / "interpolate_1.png").exists()


# ----------------------------------------------------------------------------- attributes

def test_manipulate_class_direction_cli(run_dir, tmp_path, val):
    grid = cli("--restore_path", run_dir, "--logdir", tmp_path, "--manipulate", "3",
               "--n_manipulate", 3, "--alphas=-1,0,1")["manipulate"]
    assert grid.shape == (3, 3, 8, 8, 1)
    assert np.array_equal(grid[:, 1], val[0][:3])     # alpha 0 reproduces the images
    assert not np.array_equal(grid[:, 2], grid[:, 1])
    npz = tmp_path / "manipulate_3.npz"
    with np.load(npz) as f:
        assert f["z0"].shape == (4, 4, 2) and f["z1"].shape == (2, 2, 8)
        assert int(f["n_with"]) + int(f["n_without"]) == 1500 and str(f["kind"]) == "label"
    again = cli("--restore_path", run_dir, "--logdir", tmp_path / "b", "--manipulate", "3",
                "--direction", npz, "--n_manipulate", 3, "--alphas=-1,0,1")["manipulate"]
    assert np.array_equal(again, grid)


def test_direction_is_mean_difference(trained, val):
    images, labels = val
    batches = [(images[:100], labels[:100]), (images[100:], labels[100:])]
    d, n_with, n_without = sampling.attribute_direction(trained, batches, "label", 7)
    zs = sampling.encode_images(trained, images)
    sel = labels == 7
    assert n_with == sel.sum() and n_without == (~sel).sum()
    for z, di in zip(zs, d):
        np.testing.assert_allclose(di, z[sel].mean(0) - z[~sel].mean(0), atol=1e-5)


def test_celeba_attributes(tmp_path):
    """Attribute directions from the `attr` feature of (original-layout) CelebA records."""
    from data_fixtures import ATTR_NAMES, random_images, write_original_tfrecords
    from tfglow.data import dataset_info, make_dataset

    n = 24
    x = random_images(n, 8, 8, 3, seed=1)
    attrs = np.where(np.random.default_rng(2).random((n, 40)) < 0.5, -1, 1)
    write_original_tfrecords(str(tmp_path), "train", x, np.zeros(n, int), 2, attrs=attrs)
    info = dataset_info(str(tmp_path), "train", 8)
    assert sampling.known_attributes(info)["Smiling"] == ("attr", ATTR_NAMES.index("Smiling"))
    kind, idx = sampling.resolve_attribute("smiling", info)
    model = tfglow.Glow(tfglow.GlowConfig(**{**SMALL, "n_channels": 3, "n_y": 1}))
    model.initialize(x)
    ds = make_dataset(str(tmp_path), "train", 8, 10, shuffle=False, repeat=False,
                      drop_remainder=False, with_attr=True)
    d, n_with, n_without = sampling.attribute_direction(
        model, (tuple(t.numpy() for t in b) for b in ds), kind, idx)
    assert n_with == (attrs[:, idx] > 0).sum() and n_with + n_without == n
    out = sampling.manipulate(model, x[:2], d, [-1.0, 0.0, 0.5])
    assert out.shape == (2, 3, 8, 8, 3) and np.array_equal(out[:, 1], x[:2])
    with pytest.raises(ValueError, match="known: 5_o_Clock_Shadow, Arched_Eyebrows"):
        sampling.resolve_attribute("Grinning", info)


def test_unknown_attribute_lists_known(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown attribute 'Smiling'.*known: 0, 1, 2"):
        cli("--restore_path", run_dir, "--logdir", tmp_path, "--manipulate", "Smiling")


def test_bad_direction_file(trained, tmp_path):
    p = tmp_path / "d.npz"
    sampling.save_direction(p, [np.zeros((4, 4, 2)), np.zeros((2, 2, 4))])
    with pytest.raises(ValueError, match=r"wrong or missing \['z1'\]"):
        sampling.load_direction(p, trained)


# ----------------------------------------------------------------------------- encode / decode

def _save_png(path, arr):
    from PIL import Image

    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


def test_encode_decode_cli_round_trip(run_dir, tmp_path, val):
    x = val[0][:3]
    paths = []
    for i, img in enumerate(x):
        paths.append(str(tmp_path / f"im{i}.png"))
        _save_png(paths[-1], img)
    big = np.random.default_rng(0).integers(0, 256, (20, 12, 3)).astype(np.uint8)
    paths.append(str(tmp_path / "big.png"))
    _save_png(paths[-1], big)
    z = tmp_path / "z.npz"
    with pytest.warns(UserWarning, match=r"big.png: 20x12 image centre-cropped to 12x12 and resized to 8x8"):
        cli("--restore_path", run_dir, "--logdir", tmp_path, "--encode", *paths, "--out", z)
    with np.load(z) as f:
        assert f["z0"].shape == (4, 4, 4, 2) and f["z1"].shape == (4, 2, 2, 8)
    decoded = cli("--restore_path", run_dir, "--logdir", tmp_path, "--decode", z,
                  "--out", tmp_path / "dec")["decode"]
    assert np.array_equal(decoded[:3], x)
    with pytest.warns(UserWarning):
        fitted = sampling.load_images([paths[-1]], 8, 1)
    assert np.array_equal(decoded[3:], fitted)
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(tmp_path / "dec" / "0001.png")), x[1][..., 0])


def test_round_trip_exact_for_all_pixel_values(trained):
    """Every pixel value survives encode -> decode (bin centres, not edges)."""
    x = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
    zs = sampling.encode_images(trained, x)
    assert np.array_equal(sampling.decode_latents(trained, zs), x)


def test_bad_images_and_latents(trained, tmp_path):
    with pytest.raises(ValueError, match=r"shape \[B, 8, 8, 1\]"):
        sampling.encode_images(trained, np.zeros((2, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match=r"shape \[B, 8, 8, 1\]"):
        sampling.encode_images(trained, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        sampling.encode_images(trained, np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"zs\[1\] must have shape \[B, 2, 2, 8\]"):
        sampling.decode_latents(trained, [np.zeros((2, 4, 4, 2)), np.zeros((2, 2, 2, 4))])
    p = tmp_path / "z.npz"
    np.savez(p, z0=np.zeros((2, 4, 4, 2)), z1=np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"z1 has shape \[2, 4, 4, 2\]; this model needs \[N, 2, 2, 8\]"):
        sampling.load_latents(p, trained)
    np.savez(p, z0=np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"missing \['z1'\]"):
        sampling.load_latents(p, trained)


def test_ycond_needs_labels(ycond_run, tmp_path, val):
    model = load_trained(ycond_run)[0]
    with pytest.raises(ValueError, match="class-conditional"):
        sampling.encode_images(model, val[0][:2])
    zs = sampling.encode_images(model, val[0][:4], val[1][:4])
    assert np.array_equal(sampling.decode_latents(model, zs, val[1][:4]), val[0][:4])
    res = evaluation.evaluate_split(model, "digits", "validation", 100, max_images=120)
    assert res["n_images"] == 120 and 0 <= res["pred_error"] <= 1 and res["bits_y"] > 0
