"""Bad input: a DataError naming the file and the problem, and nothing half-written."""
import glob
import gzip
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data_fixtures import (encode, idx_bytes, prep, random_images, read_split,
                           save_png, write_attr_file, write_celeba, write_cifar, write_image_folder,
                           write_imagenet_npz, write_lmdb, write_mnist, write_original_tfrecords)
from data_prep.cli import main
from tfglow.data import DataError, make_dataset, verify_dataset


def no_output(out):
    """Nothing that looks finished: no manifest, no shard file (temp files are hidden)."""
    return not os.path.exists(os.path.join(out, "dataset.json")) and \
        not glob.glob(os.path.join(out, "*", "*.tfrecords"))


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match=r"nope.*does not exist"):
        prep("cifar10", "--source", tmp_path / "nope", "--out", tmp_path / "o")
    assert no_output(tmp_path / "o")


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found"):
        prep("images", "--source", tmp_path / "empty", "--out", tmp_path / "o")


def test_cli_exit_code_and_message(tmp_path, capsys):
    assert main(["cifar10", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope: source does not exist" in capsys.readouterr().err


def test_cifar_wrong_archive_layout(tmp_path):
    path, _, _ = write_cifar(str(tmp_path), per_batch=1, n_test=1, corrupt="layout")
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: wrong archive layout: "
                                        r"no cifar-10-batches-py/data_batch_1"):
        prep("cifar10", "--source", path, "--out", tmp_path / "o")
    with open(tmp_path / "junk.tar.gz", "wb") as f:
        f.write(b"not a tarball at all")
    with pytest.raises(DataError, match=r"junk.tar.gz: not a readable tar archive"):
        prep("cifar10", "--source", tmp_path / "junk.tar.gz", "--out", tmp_path / "o")


def test_cifar_truncated_batch(tmp_path):
    path, _, _ = write_cifar(str(tmp_path), per_batch=2, n_test=3, corrupt="truncate")
    with pytest.raises(DataError, match=r"cifar-10-batches-py/test_batch: not a readable CIFAR"):
        prep("cifar10", "--source", path, "--out", tmp_path / "o")
    assert no_output(tmp_path / "o")


def test_cifar_label_out_of_range(tmp_path):
    path, _, _ = write_cifar(str(tmp_path), per_batch=4, n_test=2, corrupt="label")
    with pytest.raises(DataError, match=r"data_batch_1: label 10 of image 3 out of range 0..9"):
        prep("cifar10", "--source", path, "--out", tmp_path / "o")


def test_mnist_truncated_and_bad_labels(tmp_path):
    folder, _, _ = write_mnist(str(tmp_path / "m"), gz=False)
    path = os.path.join(folder, "train-images-idx3-ubyte")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: idx header declares .*truncated"):
        prep("mnist", "--source", folder, "--out", tmp_path / "o")
    folder, _, _ = write_mnist(str(tmp_path / "m2"), gz=True)
    with open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(idx_bytes(np.array([1, 2, 12, 3, 4], np.uint8))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 12 of image 2"):
        prep("mnist", "--source", folder, "--out", tmp_path / "o")
    os.remove(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))
    with pytest.raises(DataError, match=r"m2: missing MNIST file t10k-images"):
        prep("mnist", "--source", folder, "--out", tmp_path / "o")


def test_corrupt_image_mid_run_leaves_only_complete_shards(tmp_path):
    root, _, _ = write_image_folder(str(tmp_path / "imgs"), per_class=4)
    bad = os.path.join(root, "dog", "2.png")
    with open(bad, "rb") as f:
        blob = f.read()
    with open(bad, "wb") as f:
        f.write(blob[: len(blob) // 2])
    out = tmp_path / "o"
    with pytest.raises(DataError, match=r"dog/2.png: corrupt, truncated"):
        prep("images", "--source", root, "--out", out, "--shards", 6, "--val_fraction", 0)
    assert not os.path.exists(out / "dataset.json")
    assert not glob.glob(str(out / "*" / ".*partial*"))  # temp file of the failed shard removed
    for path in glob.glob(str(out / "train" / "*.tfrecords")):  # any finished shard is whole
        assert sum(1 for _ in tf.data.TFRecordDataset(path)) == 2
    with pytest.raises(DataError, match="did not finish|shard missing|no TFRecord shards"):
        make_dataset(str(out), "train", 16, 2)


def test_mixed_image_sizes(tmp_path):
    root, _, _ = write_image_folder(str(tmp_path / "imgs"), classes=("a",), per_class=3)
    save_png(os.path.join(root, "a", "odd.png"), random_images(1, 20, 20)[0])
    with pytest.raises(DataError, match=r"(odd.png: image is 20x20x3 but images before it|"
                                        r"image is 16x16x3 but images before it \(e\.g\. .*odd.png)"):
        prep("images", "--source", root, "--out", tmp_path / "o", "--shards", 1, "--val_fraction", 0)


def test_non_power_of_two_resolution(tmp_path):
    with pytest.raises(DataError, match="resolution 24 is not a power of two"):
        prep("digits", "--out", tmp_path / "o", "--resolution", 24)
    assert no_output(tmp_path / "o")
    root, _, _ = write_image_folder(str(tmp_path / "imgs"), classes=("a",), per_class=2, size=12)
    with pytest.raises(DataError, match=r"images are 12x12; give --resolution"):
        prep("images", "--source", root, "--out", tmp_path / "o2")
    with pytest.raises(DataError, match=r"images are 12x12; resolution 8 needs square images"):
        prep("images", "--source", root, "--out", tmp_path / "o3", "--resolution", 8)


def test_corrupt_lmdb_value(tmp_path):
    blobs = [encode(random_images(1, 20, 20)[0], "WEBP") for _ in range(3)]
    blobs[1] = b"RIFF\x00\x00garbage"
    src = write_lmdb(str(tmp_path / "tower_lmdb"), blobs)
    with pytest.raises(DataError, match=r"tower_lmdb\[key [0-9a-f]+\]: corrupt, truncated"):
        prep("lsun", "--source", src, "--out", tmp_path / "o", "--resolution", 16,
             "--val_fraction", 0, "--shards", 1)
    os.makedirs(tmp_path / "notlmdb")
    with pytest.raises(DataError, match=r"wrong layout"):
        prep("lsun", "--source", tmp_path / "notlmdb", "--out", tmp_path / "o", "--resolution", 16)


def test_npz_label_out_of_range_and_truncated(tmp_path):
    root, _ = write_imagenet_npz(str(tmp_path / "a"), bad_label=True)
    with pytest.raises(DataError, match=r"train_data_batch_1.npz: label 0 of image 0 out of range 1..1000"):
        prep("imagenet_oord", "--source", root, "--out", tmp_path / "o")
    root, _ = write_imagenet_npz(str(tmp_path / "b"))
    path = glob.glob(os.path.join(root, "*", "val_data.npz"))[0]
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[:200])
    with pytest.raises(DataError, match=r"val_data.npz: corrupt or truncated npz"):
        prep("imagenet_oord", "--source", root, "--out", tmp_path / "o")


def test_celeba_attribute_file_problems(tmp_path):
    img_dir, x, attrs = write_celeba(str(tmp_path), n=4)
    attr = os.path.join(str(tmp_path), "list_attr_celeba.txt")
    with open(attr) as f:
        lines = f.read().splitlines()
    lines[3] = lines[3].replace(" 1", " 7", 1) if " 1" in lines[3] else lines[3].replace("-1", " 7", 1)
    with open(attr, "w") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt: line 4: attribute values must be \+1 or -1"):
        prep("celeba", "--source", img_dir, "--out", tmp_path / "o")
    write_attr_file(attr, ["000003.jpg"], attrs[:1])  # only the first image has a row
    with pytest.raises(DataError, match=r"000010.png: no row for this image in .*list_attr_celeba.txt"):
        prep("celeba", "--source", img_dir, "--out", tmp_path / "o")
    write_attr_file(attr, ["000003.jpg"], attrs[:1], count=5)
    with pytest.raises(DataError, match=r"count line says 5 images but 1 rows follow"):
        prep("celeba", "--source", img_dir, "--out", tmp_path / "o")
    os.remove(attr)
    with pytest.raises(DataError, match=r"celeba-hq: no attribute file"):
        prep("celeba", "--source", img_dir, "--out", tmp_path / "o")


@pytest.fixture()
def prepared(tmp_path):
    out = tmp_path / "d"
    prep("digits", "--out", out, "--shards", 3)
    return out


def test_manifest_missing_shard(prepared):
    victim = prepared / "train" / "train-r03-s-0001-of-0003.tfrecords"
    os.remove(victim)
    with pytest.raises(DataError, match=r"train-r03-s-0001-of-0003.tfrecords: shard listed in "
                                        r"dataset.json is missing"):
        make_dataset(str(prepared), "train", 8, 4)


def test_manifest_truncated_shard(prepared):
    victim = prepared / "train" / "train-r03-s-0002-of-0003.tfrecords"
    with open(victim, "rb+") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match=r"train-r03-s-0002-of-0003.tfrecords: shard has 1000 bytes"):
        make_dataset(str(prepared), "train", 8, 4)
    with pytest.raises(DataError, match=r"s-0002-of-0003.tfrecords"):
        verify_dataset(str(prepared))


def test_manifest_extra_shard(prepared):
    shutil.copy(prepared / "train" / "train-r03-s-0000-of-0003.tfrecords",
                prepared / "train" / "train-r03-s-0003-of-0004.tfrecords")
    with pytest.raises(DataError, match=r"s-0003-of-0004.tfrecords: shard file is not listed"):
        make_dataset(str(prepared), "train", 8, 4)


def test_corrupt_record_same_size_caught_by_verify(prepared, capsys):
    victim = prepared / "train" / "train-r03-s-0000-of-0003.tfrecords"
    with open(victim, "rb+") as f:
        f.seek(500)
        byte = f.read(1)
        f.seek(500)
        f.write(bytes([byte[0] ^ 0xFF]))
    make_dataset(str(prepared), "train", 8, 4)  # cheap checks (names, sizes) pass
    with pytest.raises(DataError, match=r"s-0000-of-0003.tfrecords: sha256"):
        make_dataset(str(prepared), "train", 8, 4, verify=True)
    assert main(["verify", str(prepared)]) == 2
    assert "s-0000-of-0003.tfrecords: sha256" in capsys.readouterr().err


def test_original_records_bad_shape_and_missing_shard(tmp_path):
    x = random_images(6, 16, 16)
    write_original_tfrecords(str(tmp_path), "train", x, np.zeros(6), 3)
    with pytest.raises(DataError, match=r"train-r05-s-\*-of-\*.tfrecords: no TFRecord shards match"):
        make_dataset(str(tmp_path), "train", 32, 2)
    # a record whose data does not fit its shape: the runtime error names the shard file
    path = write_original_tfrecords(str(tmp_path / "b"), "train", x[:2], np.zeros(2), 1)
    bad = tf.train.Example(features=tf.train.Features(feature={
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[16, 16, 3])),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00" * 100])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}))
    name = os.path.join(path, "train-r04-s-0000-of-0001.tfrecords")
    good = next(iter(tf.data.TFRecordDataset(name))).numpy()
    with tf.io.TFRecordWriter(name) as w:
        w.write(bad.SerializeToString())
    with pytest.raises(DataError, match=r"s-0000-of-0001.tfrecords: record data has 100 bytes"):
        read_split(tmp_path / "b", "train", 16)  # the first record is checked up front
    with tf.io.TFRecordWriter(name) as w:
        w.write(good)
        w.write(bad.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"train-r04-s-0000-of-0001.tfrecords"):
        read_split(tmp_path / "b", "train", 16)
    os.remove(os.path.join(str(tmp_path), "train", "train-r04-s-0001-of-0003.tfrecords"))
    with pytest.raises(DataError, match=r"train-r04-s-0001-of-0003.tfrecords: shard missing: "
                                        r"only 2 of 3"):
        make_dataset(str(tmp_path), "train", 16, 2)


def test_labels_out_of_range_at_read_time(tmp_path):
    """Records whose labels exceed the manifest's num_classes fail naming the shard."""
    import json

    out = tmp_path / "d"
    prep("digits", "--out", out, "--shards", 1)
    with open(out / "dataset.json") as f:
        manifest = json.load(f)
    manifest["num_classes"] = 5
    with open(out / "dataset.json", "w") as f:
        json.dump(manifest, f)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label out of range 0..4"):
        read_split(out, "train", 8)


def test_bad_manifest_json(tmp_path):
    out = tmp_path / "d"
    prep("digits", "--out", out, "--shards", 1)
    with open(out / "dataset.json", "w") as f:
        f.write("{ not json")
    with pytest.raises(DataError, match=r"dataset.json: unreadable manifest"):
        make_dataset(str(out), "train", 8, 4)


def test_out_dir_with_foreign_shards_is_not_clobbered(tmp_path):
    x = random_images(2, 8, 8)
    write_original_tfrecords(str(tmp_path / "orig"), "train", x, np.zeros(2), 1)
    with pytest.raises(DataError, match=r"orig: already holds TFRecord shards"):
        prep("digits", "--out", tmp_path / "orig")
    assert os.path.exists(tmp_path / "orig" / "train" / "train-r03-s-0000-of-0001.tfrecords")
