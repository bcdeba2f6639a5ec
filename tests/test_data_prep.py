"""Round trips: every converter on a tiny fixture in its upstream format, read back through
make_dataset, must reproduce the source pixels and labels exactly."""
import glob
import json
import os

import numpy as np
import pytest

from data_fixtures import (box_reference, canon, encode, lsun_images, prep, raw_records,
                           read_split, write_celeba, write_cifar, write_image_folder,
                           write_imagenet_npz, write_imagenet_png, write_lmdb, write_mnist)
from tfglow.data import make_dataset, verify_dataset
from tfglow.data.records import sha256_file


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    path, train, test = write_cifar(str(root))
    out = root / "tfr"
    manifest = prep("cifar10", "--source", path, "--out", out, "--shards", 4,
                    "--resolution", 32, 16)
    return out, manifest, train, test


def test_cifar_tarball_round_trip_and_downsampling(cifar):
    out, manifest, (x_tr, y_tr), (x_te, y_te) = cifar
    x, y = read_split(out, "train", 32)
    assert canon(x, y) == canon(x_tr, y_tr)
    x, y = read_split(out, "validation", 32)
    assert canon(x, y) == canon(x_te, y_te)
    x, y = read_split(out, "train", 16)
    assert canon(x, y) == canon(box_reference(x_tr, 16), y_tr)


def test_cifar_manifest_and_file_names(cifar):
    out, manifest, (x_tr, _), (x_te, _) = cifar
    assert manifest["name"] == "cifar10" and manifest["n_bits_x"] == 8
    assert manifest["resolutions"] == [32, 16]
    assert manifest["label_names"][0] == "airplane" and manifest["num_classes"] == 10
    train = manifest["splits"]["train"]
    assert train["count"] == len(x_tr) and manifest["splits"]["validation"]["count"] == len(x_te)
    names = sorted(os.path.basename(p) for p in glob.glob(str(out / "train" / "*.tfrecords")))
    assert names == [f"train-r{lg:02d}-s-{s:04d}-of-0004.tfrecords" for lg in (4, 5) for s in range(4)]
    for res in ("32", "16"):
        shards = train["resolutions"][res]["shards"]
        assert sum(s["count"] for s in shards) == len(x_tr)
        for s in shards:
            path = out / "train" / s["file"]
            assert s["sha256"] == sha256_file(path) and s["bytes"] == os.path.getsize(path)
            assert len(raw_records(path)) == s["count"]
    assert verify_dataset(str(out))["records"] == 2 * (len(x_tr) + len(x_te))
    assert not glob.glob(str(out / "**" / ".*"), recursive=True)  # no temp / state files left


def test_cifar_extracted_folder(tmp_path):
    path, (x_tr, y_tr), _ = write_cifar(str(tmp_path), per_batch=2, n_test=2, as_tar=False, seed=3)
    prep("cifar10", "--source", path, "--out", tmp_path / "o", "--shards", 2)
    assert canon(*read_split(tmp_path / "o", "train", 32)) == canon(x_tr, y_tr)


def test_five_bit_preparation(tmp_path):
    path, (x_tr, y_tr), _ = write_cifar(str(tmp_path), per_batch=2, n_test=2, seed=4)
    out = tmp_path / "o5"
    manifest = prep("cifar10", "--source", path, "--out", out, "--shards", 2, "--n_bits_x", 5)
    assert manifest["n_bits_x"] == 5
    stored = [r for p in sorted(glob.glob(str(out / "train" / "*.tfrecords"))) for r in raw_records(p)]
    assert canon([s[0] for s in stored], [s[1] for s in stored]) == canon(x_tr // 8, y_tr)
    x, y = read_split(out, "train", 32)
    assert canon(x, y) == canon((x_tr // 8) * 8, y_tr)  # make_dataset hands the model x*8
    assert canon(x // 8, y) == canon(x_tr // 8, y_tr)  # the model's floor(x/8) recovers it


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_padded_and_tiled(tmp_path, gz):
    folder, (x_tr, y_tr), (x_te, y_te) = write_mnist(str(tmp_path / "mnist"), gz=gz)
    prep("mnist", "--source", folder, "--out", tmp_path / "o", "--shards", 3)

    def expect(x):
        padded = np.zeros((len(x), 32, 32, 3), np.uint8)
        padded[:, 2:30, 2:30, :] = x[..., None]
        return padded

    assert canon(*read_split(tmp_path / "o", "train", 32)) == canon(expect(x_tr), y_tr)
    assert canon(*read_split(tmp_path / "o", "validation", 32)) == canon(expect(x_te), y_te)


@pytest.mark.parametrize("hq_names", [False, True])
def test_celeba_attributes_and_split(tmp_path, hq_names):
    img_dir, x, attrs = write_celeba(str(tmp_path), n=10, hq_names=hq_names)
    out = tmp_path / "o"
    manifest = prep("celeba", "--source", img_dir, "--out", out, "--shards", 2,
                    "--resolution", 16, 8)
    assert manifest["splits"]["train"]["count"] == 9  # 27,000 / 3,000 proportions
    assert manifest["splits"]["validation"]["count"] == 1
    assert len(manifest["attr_names"]) == 40 and manifest["attr_names"][31] == "Smiling"
    xs, ys, at = [], [], []
    for split in ("train", "validation"):
        a, b, c = read_split(out, split, 16, with_attr=True)
        xs += list(a)
        ys += list(b)
        at += list(c)
    assert canon(xs, ys, at) == canon(x, np.zeros(10), attrs)
    assert set(np.unique(at)) == {-1, 1}
    # validation is the last image by name
    vx, _, va = read_split(out, "validation", 16, with_attr=True)
    assert (vx[0] == x[-1]).all() and (va[0] == attrs[-1]).all()
    x8, _, _ = read_split(out, "train", 8, with_attr=True)
    assert canon(x8, np.zeros(9)) == canon(box_reference(x[:9], 8), np.zeros(9))


def test_imagenet_oord_npz_batches(tmp_path):
    root, data = write_imagenet_npz(str(tmp_path / "in"), side=32)
    out = tmp_path / "o"
    manifest = prep("imagenet_oord", "--source", root, "--out", out, "--shards", 3)
    assert manifest["num_classes"] == 1000
    for split in ("train", "validation"):
        x, y = data[split]
        assert canon(*read_split(out, split, 32)) == canon(x, y - 1)


def test_imagenet_oord_64_png_folders(tmp_path):
    root, data = write_imagenet_png(str(tmp_path / "in"), side=64, n_train=4, n_val=2)
    out = tmp_path / "o"
    prep("imagenet_oord", "--source", root, "--out", out, "--shards", 2, "--resolution", 64, 32)
    for split in ("train", "validation"):
        x = data[split]
        assert canon(*read_split(out, split, 64)) == canon(x, np.zeros(len(x)))
        assert canon(*read_split(out, split, 32)) == canon(box_reference(x, 32), np.zeros(len(x)))


def test_lsun_lmdb_centre_crop(tmp_path):
    from PIL import Image

    imgs = lsun_images(5, 24, 40)
    lmdb_dir = write_lmdb(str(tmp_path / "church_outdoor_train_lmdb"), [encode(i, "WEBP") for i in imgs])
    val = lsun_images(2, 40, 24, seed=9)
    write_lmdb(str(tmp_path / "church_outdoor_val_lmdb"), [encode(i, "WEBP") for i in val])
    out = tmp_path / "o"
    prep("lsun", "--source", tmp_path, "--out", out, "--resolution", 16, "--shards", 2)

    def expect(x):  # centre square, then PIL antialias resize, as the original lsun.py
        h, w = x.shape[:2]
        s = min(h, w)
        sq = x[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
        return np.asarray(Image.fromarray(sq).resize((16, 16), Image.LANCZOS))

    assert canon(*read_split(out, "train", 16)) == canon([expect(i) for i in imgs], np.zeros(5))
    assert canon(*read_split(out, "validation", 16)) == canon([expect(i) for i in val], np.zeros(2))
    assert os.path.isdir(lmdb_dir)


def test_lsun_realnvp_jpeg_random_crops(tmp_path):
    import skimage.transform
    from PIL import Image
    import io

    imgs = lsun_images(3, 100, 128)
    blobs = [encode(i, "JPEG") for i in imgs]
    src = write_lmdb(str(tmp_path / "bedroom_lmdb"), blobs)
    out = tmp_path / "o"
    manifest = prep("lsun", "--source", src, "--out", out, "--realnvp", "--val_fraction", 0,
                    "--shards", 1)
    assert manifest["resolutions"] == [96] and manifest["variable_shape"]
    assert glob.glob(str(out / "train" / "train-r06-s-0000-of-0001.tfrecords"))
    decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
    expect = [(skimage.transform.pyramid_reduce(d, min(d.shape[:2]) / 96.0, channel_axis=-1)
               * 255.0).astype(np.uint8) for d in decoded]
    stored = raw_records(str(out / "train" / "train-r06-s-0000-of-0001.tfrecords"))
    assert sorted(s[0].tobytes() for s in stored) == sorted(e.tobytes() for e in expect)
    assert all(s[0].shape[0] == 96 and s[0].shape[1] > 96 for s in stored)
    ds = make_dataset(str(out), "train", 64, 3, shuffle=True, repeat=False, rnd_crop=True, seed=5)
    (crops, _), = [(a.numpy(), b.numpy()) for a, b in ds]
    assert crops.shape == (3, 64, 64, 3)
    for c in crops:  # every crop is a 64x64 window of some stored image
        assert any((e[i:i + 64, j:j + 64] == c).all() for e in expect
                   for i in range(e.shape[0] - 63) for j in range(e.shape[1] - 63))


def test_image_folder_with_class_labels(tmp_path):
    root, x, y = write_image_folder(str(tmp_path / "imgs"))
    out = tmp_path / "o"
    manifest = prep("images", "--source", root, "--out", out, "--val_fraction", 0.25, "--shards", 2)
    assert manifest["label_names"] == ["cat", "dog", "emu"] and manifest["num_classes"] == 3
    assert manifest["splits"]["validation"]["count"] == 3
    a, b = read_split(out, "train", 16)
    c, d = read_split(out, "validation", 16)
    assert canon(np.concatenate([a, c]), np.concatenate([b, d])) == canon(x, y)


def test_image_folder_resize_crop_grey(tmp_path):
    from data_fixtures import save_png

    x = lsun_images(3, 20, 30)[..., :1]
    for i, im in enumerate(x):
        save_png(str(tmp_path / "g" / f"{i}.png"), im)
    out = tmp_path / "o"
    prep("images", "--source", tmp_path / "g", "--out", out, "--resize", "crop",
         "--resolution", 16, "--channels", 1, "--val_fraction", 0)
    got, _ = read_split(out, "train", 16)
    assert got.shape == (3, 16, 16, 1)


def test_digits_prepared_equal_embedded(tmp_path):
    from data_prep.digits import load_digits_uint8

    out = tmp_path / "d"
    prep("digits", "--out", out, "--shards", 3)
    images, labels = load_digits_uint8()
    x, y = read_split(out, "train", 8)
    assert canon(x, y) == canon(images[:1500], labels[:1500])
    assert canon(*read_split(out, "validation", 8)) == canon(*read_split(None, "validation", 8))


def test_tfds_mock_round_trip(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        builder = tfds.builder("mnist", data_dir=str(tmp_path / "tfds"))
        direct = {s: [(ex["image"], ex["label"]) for ex in
                      tfds.as_numpy(builder.as_dataset(split=s, shuffle_files=False))]
                  for s in ("train", "test")}
        out = tmp_path / "o"
        manifest = prep("tfds:mnist", "--source", tmp_path / "tfds", "--out", out, "--shards", 2,
                        "--resize", "pad")
    assert manifest["channels"] == 1 and manifest["num_classes"] == 10
    assert manifest["resolutions"] == [32]  # 28x28 zero-padded to 32x32, as the MNIST rule
    for split, tsplit in (("train", "train"), ("validation", "test")):
        x, y = read_split(out, split, 32)
        expect = [np.pad(a, ((2, 2), (2, 2), (0, 0))) for a, _ in direct[tsplit]]
        assert canon(x, y) == canon(expect, [b for _, b in direct[tsplit]])


def test_rerun_same_options_is_a_no_op_and_other_options_need_overwrite(tmp_path):
    from tfglow.data import DataError

    out = tmp_path / "d"
    prep("digits", "--out", out, "--shards", 2)
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "*" / "*.tfrecords"))}
    prep("digits", "--out", out, "--shards", 2)
    assert before == {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "*" / "*.tfrecords"))}
    lost = out / "train" / "train-r03-s-0001-of-0002.tfrecords"
    os.remove(lost)
    prep("digits", "--out", out, "--shards", 2)  # rewrites just the lost shard
    after = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / "*" / "*.tfrecords"))}
    assert after[str(lost)] != before[str(lost)]
    assert all(after[p] == t for p, t in before.items() if p != str(lost))
    assert verify_dataset(str(out))["records"] == 1797
    with pytest.raises(DataError, match="dataset.json.*--overwrite"):
        prep("digits", "--out", out, "--shards", 3)
    manifest = prep("digits", "--out", out, "--shards", 3, "--overwrite")
    files = sorted(os.path.basename(p) for p in glob.glob(str(out / "train" / "*.tfrecords")))
    assert files == [f"train-r03-s-{i:04d}-of-0003.tfrecords" for i in range(3)]
    assert len(manifest["splits"]["train"]["resolutions"]["8"]["shards"]) == 3
    with open(out / "dataset.json") as f:
        assert json.load(f)["options"]["shards"] == 3


def test_min_resolution_writes_every_level(tmp_path):
    from data_prep.digits import load_digits_uint8

    manifest = prep("digits", "--out", tmp_path / "d", "--min_resolution", 2, "--shards", 1)
    assert manifest["resolutions"] == [8, 4, 2]
    images, labels = load_digits_uint8()
    for size in (4, 2):
        got = read_split(tmp_path / "d", "validation", size)
        assert canon(*got) == canon(box_reference(images[-297:], size), labels[-297:])


def test_image_folder_with_split_folders(tmp_path):
    write_image_folder(str(tmp_path / "s" / "train"), classes=("a", "b"), per_class=3)
    _, xv, yv = write_image_folder(str(tmp_path / "s" / "val"), classes=("b",), per_class=2, seed=7)
    manifest = prep("images", "--source", tmp_path / "s", "--out", tmp_path / "o", "--shards", 2)
    assert manifest["label_names"] == ["a", "b"]
    assert manifest["splits"]["train"]["count"] == 6
    assert canon(*read_split(tmp_path / "o", "validation", 16)) == canon(xv, yv + 1)  # b -> 1
