"""SavedModel export: signatures, agreement with the package (1e-5), loading without tfglow,
and `saved_model_cli run`."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from test_evaluate import cli, make_run
from tfglow import evaluation, sampling
from tfglow.data import load_numpy
from tfglow.training.checkpoints import load_trained

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(export dir, Polyak model) of a small trained-like digits run, exported by the CLI."""
    root = tmp_path_factory.mktemp("export")
    run = str(root / "run")
    make_run(run)
    cli("--restore_path", run, "--logdir", root / "ev", "--export", root / "sm")
    return str(root / "sm"), load_trained(run)[0], run


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[0])


@pytest.fixture(scope="module")
def val():
    return load_numpy("digits", "validation", 8)[:2]


def test_signatures_and_shapes(loaded, exported):
    model = exported[1]
    sigs = loaded.signatures
    assert set(sigs) == {"encode", "decode", "sample", "sample_seeded", "bits_per_dim"}
    outs = sigs["encode"].structured_outputs
    assert sorted(outs) == ["z0", "z1"]
    for i, shape in enumerate(model.latent_shapes):
        assert outs[f"z{i}"].shape.as_list() == [None, *shape]
    assert sorted(sigs["decode"].structured_input_signature[1]) == ["z0", "z1"]
    assert set(sigs["sample"].structured_input_signature[1]) == {"n", "temperature"}
    assert json.loads(loaded.config.numpy())["depth"] == model.config.depth


def test_exported_agrees_with_package(loaded, exported, val):
    model = exported[1]
    x = val[0][:20]
    zs = loaded.signatures["encode"](images=tf.constant(x))
    ref = sampling.encode_images(model, x)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(zs[f"z{i}"].numpy(), r, atol=1e-5)
    images = loaded.signatures["decode"](**zs)["images"].numpy()
    assert np.array_equal(images, x)
    np.testing.assert_array_equal(images, sampling.decode_latents(model, ref))
    bpd = loaded.signatures["bits_per_dim"](images=tf.constant(x))["bits_per_dim"].numpy()
    np.testing.assert_allclose(bpd, evaluation.per_image_bits(model, x).numpy(), atol=1e-5)
    s = loaded.signatures["sample_seeded"](n=tf.constant(5), temperature=tf.constant(0.7),
                                           seed=tf.constant(3))["images"].numpy()
    assert np.array_equal(s, model.sample(5, 0.7, seed=3).numpy())
    s = loaded.signatures["sample"](n=tf.constant(3), temperature=tf.constant(1.0))["images"]
    assert s.shape == (3, 8, 8, 1) and s.dtype == tf.uint8


def test_polyak_weights_are_exported(loaded, exported, val):
    raw = load_trained(exported[2], use_polyak=False)[0]
    x = val[0][:8]
    bpd = loaded.signatures["bits_per_dim"](images=tf.constant(x))["bits_per_dim"].numpy()
    assert np.abs(bpd - evaluation.per_image_bits(raw, x).numpy()).max() > 1e-4


def test_exported_bad_input(loaded):
    enc, dec = loaded.signatures["encode"], loaded.signatures["decode"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must have shape \[B, 8, 8, 1\]"):
        enc(images=tf.zeros([2, 16, 16, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must have shape \[B, 8, 8, 1\]"):
        loaded.signatures["bits_per_dim"](images=tf.zeros([2, 8, 8, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="uint8"):
        enc(images=tf.zeros([2, 8, 8, 1], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z1 must have shape \[B, 2, 2, 8\]"):
        dec(z0=tf.zeros([1, 4, 4, 2]), z1=tf.zeros([1, 2, 2, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="z1 must have the batch size"):
        dec(z0=tf.zeros([1, 4, 4, 2]), z1=tf.zeros([3, 2, 2, 8]))


_NO_TFGLOW = textwrap.dedent("""
    import sys
    sys.modules["tfglow"] = None            # tfglow is installed (editable) in the venv
    sys.modules["data_prep"] = None
    try:
        import tfglow
    except ImportError:
        pass
    else:
        raise SystemExit("tfglow importable")
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load(sys.argv[1])
    x = np.load(sys.argv[2])
    zs = m.signatures["encode"](images=tf.constant(x))
    dec = m.signatures["decode"](**zs)["images"].numpy()
    bpd = m.signatures["bits_per_dim"](images=tf.constant(x))["bits_per_dim"].numpy()
    smp = m.signatures["sample_seeded"](n=tf.constant(4), temperature=tf.constant(0.7),
                                        seed=tf.constant(1))["images"].numpy()
    np.savez(sys.argv[3], dec=dec, bpd=bpd, smp=smp, **{k: v.numpy() for k, v in zs.items()})
    print("loaded without tfglow:", sorted(m.signatures),
          [k for k, v in sys.modules.items() if k.split(".")[0] in ("tfglow", "data_prep") and v])
""")


def test_loads_in_a_process_without_tfglow(exported, val, tmp_path):
    export_dir, model, _ = exported
    x = val[0][:6]
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(_NO_TFGLOW)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", str(script), export_dir, str(tmp_path / "x.npy"),
                           str(tmp_path / "out.npz")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded without tfglow" in proc.stdout and proc.stdout.strip().endswith("[]")
    out = np.load(tmp_path / "out.npz")
    assert np.array_equal(out["dec"], x)
    for i, z in enumerate(sampling.encode_images(model, x)):
        np.testing.assert_allclose(out[f"z{i}"], z, atol=1e-5)
    np.testing.assert_allclose(out["bpd"], evaluation.per_image_bits(model, x).numpy(), atol=1e-5)
    assert np.array_equal(out["smp"], model.sample(4, 0.7, seed=1).numpy())


def test_saved_model_cli_run(exported, val, tmp_path):
    export_dir, model, _ = exported
    x = val[0][:4]
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([os.path.join(BIN, "saved_model_cli"), "run", "--dir", export_dir,
                           "--tag_set", "serve", "--signature_def", "bits_per_dim",
                           "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir",
                           str(tmp_path / "out")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bpd = np.load(tmp_path / "out" / "bits_per_dim.npy")
    np.testing.assert_allclose(bpd, evaluation.per_image_bits(model, x).numpy(), atol=1e-5)


def test_ycond_export(tmp_path, val):
    from tfglow.export import export_saved_model

    run = str(tmp_path / "run")
    make_run(run, ycond=True, flow_coupling=0)
    model = load_trained(run)[0]
    export_saved_model(model, str(tmp_path / "sm"))
    m = tf.saved_model.load(str(tmp_path / "sm"))
    x, y = val[0][:6], val[1][:6].astype(np.int32)
    zs = m.signatures["encode"](images=tf.constant(x), y=tf.constant(y))
    assert np.array_equal(m.signatures["decode"](**zs, y=tf.constant(y))["images"].numpy(), x)
    s = m.signatures["sample_seeded"](n=tf.constant(6), temperature=tf.constant(0.5),
                                      seed=tf.constant(2), y=tf.constant(y))["images"].numpy()
    assert np.array_equal(s, model.sample(6, 0.5, y=y, seed=2).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="y must hold n labels"):
        m.signatures["sample"](n=tf.constant(4), temperature=tf.constant(0.5), y=tf.constant(y))
    assert set(m.signatures["bits_per_dim"].structured_input_signature[1]) == {"images", "y"}


def test_export_needs_initialised_model(tmp_path):
    import tfglow
    from tfglow.export import export_saved_model

    model = tfglow.Glow(tfglow.GlowConfig(image_size=8, n_channels=1, n_levels=2, depth=1, width=8))
    with pytest.raises(ValueError, match="not initialised"):
        export_saved_model(model, str(tmp_path / "sm"))
