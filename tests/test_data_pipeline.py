"""tfglow.data.make_dataset: sharding, shuffling, augmentation, crops, digits, original data."""
import numpy as np
import pytest
import tensorflow as tf

from data_fixtures import canon, prep, random_images, read_split, write_cifar, write_original_tfrecords
from tfglow.data import DataError, augment_batch, effective_dal, make_dataset, steps_per_epoch
from tfglow.data.augment import apply_affine, keras_affine_matrices


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_pipe")
    path, train, test = write_cifar(str(root), per_batch=5, n_test=7, seed=11)
    out = root / "tfr"
    prep("cifar10", "--source", path, "--out", out, "--shards", 4, "--val_shards", 1)
    return str(out), train, test


def _records(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("num_shards", [1, 3, 4, 7])  # 7 > 4 files: record-level
def test_sharding_is_disjoint_and_complete(cifar_dir, num_shards):
    data_dir, (x, y), _ = cifar_dir
    keys = []
    for index in range(num_shards):
        ds = make_dataset(data_dir, "train", 32, 4, shard=(num_shards, index), shuffle=True,
                          seed=3, repeat=False)
        a, b = _records(ds)
        keys.append(canon(a, b))
    everything = sorted(k for part in keys for k in part)
    assert everything == canon(x, y)  # complete, and no record twice (disjoint)
    assert all(len(part) > 0 for part in keys)


def test_validation_split_single_file_sharded_by_record(cifar_dir):
    data_dir, _, (x, y) = cifar_dir
    parts = [canon(*_records(make_dataset(data_dir, "validation", 32, 2, shard=(3, i),
                                          shuffle=False, repeat=False))) for i in range(3)]
    assert sorted(k for p in parts for k in p) == canon(x, y)
    assert [len(p) for p in parts] == [3, 2, 2]


def test_shuffle_is_seeded_and_reshuffles_every_pass(cifar_dir):
    data_dir, (x, _), _ = cifar_dir
    n = len(x)

    def first_pass_labels(seed):
        ds = make_dataset(data_dir, "train", 32, n, seed=seed, repeat=True)
        it = iter(ds)
        return [next(it)[0].numpy() for _ in range(2)]

    a, b = first_pass_labels(1), first_pass_labels(1)
    assert all((p == q).all() for p, q in zip(a, b))  # reproducible
    assert not (a[0] == a[1]).all()  # second pass in a new order
    assert canon(a[0], np.zeros(n)) == canon(a[1], np.zeros(n))  # ... of the same images
    c = first_pass_labels(2)
    assert not (a[0] == c[0]).all()


def test_repeat_serves_n_train_epochs_with_static_batches(cifar_dir):
    data_dir, (x, _), _ = cifar_dir
    ds = make_dataset(data_dir, "train", 32, 8, dal=1)
    assert ds.element_spec[0].shape.as_list() == [8, 32, 32, 3]
    steps = steps_per_epoch(50, 8)
    assert steps == 6
    assert sum(1 for _ in ds.take(steps)) == steps  # more than the 25 stored images: repeats


def _scipy_keras_reference(image, theta, tx, ty, shear, zx, zy):
    """What Keras' ImageDataGenerator does: scipy affine_transform, order 1, mode nearest."""
    from scipy import ndimage

    h, w = image.shape[:2]
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    sh = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = rot @ shift @ sh @ zoom
    ox, oy = h / 2 - 0.5, w / 2 - 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    return np.stack([ndimage.affine_transform(image[..., c].astype(np.float64), m[:2, :2], m[:2, 2],
                                              order=1, mode="nearest") for c in range(image.shape[2])],
                    axis=-1)


def test_affine_matches_keras_image_data_generator():
    imgs = random_images(3, 16, 16, seed=7).astype(np.float32)
    params = np.array([[0.2, 1.6, -0.7, 0.01, 0.93, 1.08],
                       [-0.26, -1.2, 1.5, -0.0003, 1.1, 0.9],
                       [0.0, 0.5, 0.0, 0.0, 1.0, 1.0]], np.float32)
    cols = [tf.constant(params[:, k]) for k in range(6)]
    got = apply_affine(tf.constant(imgs), keras_affine_matrices(*cols, 16.0, 16.0)).numpy()
    for i in range(3):
        ref = _scipy_keras_reference(imgs[i], *params[i])
        assert np.abs(got[i] - ref).max() < 0.05


def test_dal_levels(cifar_dir):
    data_dir, (x, y), _ = cifar_dir
    n = len(x)
    plain = make_dataset(data_dir, "train", 32, n, dal=0, seed=4, repeat=False)
    a, b = next(iter(plain))
    assert canon(a.numpy(), b.numpy()) == canon(x, y)  # dal 0: exact
    for dal in (1, 2):
        ds = make_dataset(data_dir, "train", 32, n, dal=dal, seed=4, repeat=False)
        aug, lab = next(iter(ds))
        again, _ = next(iter(make_dataset(data_dir, "train", 32, n, dal=dal, seed=4, repeat=False)))
        assert aug.dtype == tf.uint8 and aug.shape == (n, 32, 32, 3)
        assert (aug.numpy() == again.numpy()).all()  # seeded
        assert (lab.numpy() == b.numpy()).all()  # same order as without augmentation
        changed = [(u != v).any() for u, v in zip(aug.numpy(), a.numpy())]
        assert sum(changed) >= n - 2  # (shifts of |t| < 0.5 px can leave a random image put)


def test_dal1_is_a_pure_shift():
    """With integer shifts the bilinear sampling is exact: the result is the shifted image
    with edge pixels repeated, as Keras' fill_mode='nearest'."""
    img = random_images(1, 8, 8, seed=2)
    matrices = keras_affine_matrices(tf.zeros([1]), tf.constant([2.0]), tf.constant([-1.0]),
                                     tf.zeros([1]), tf.ones([1]), tf.ones([1]), 8.0, 8.0)
    out = apply_affine(tf.constant(img, tf.float32), matrices).numpy()[0]
    rows = np.clip(np.arange(8) + 2, 0, 7)
    cols = np.clip(np.arange(8) - 1, 0, 7)
    assert np.allclose(out, img[0][rows][:, cols], atol=1e-3)


def test_augment_batch_flips_in_dal2():
    img = np.tile(np.arange(16, dtype=np.uint8)[None, :, None] * 10, (16, 1, 3))[None]
    batch = np.repeat(img, 64, axis=0)
    out = augment_batch(tf.constant(batch), tf.constant([5, 6], tf.int64), 2).numpy()
    left_bright = out[:, 8, 2, 0] > out[:, 8, 13, 0]
    assert 10 < left_bright.sum() < 54  # about half are mirrored


def test_effective_dal_mirrors_original():
    assert effective_dal("cifar10", 2) == 2 and effective_dal("mnist", 2) == 1
    assert effective_dal("celeba", 1) == 0


def test_digits_need_no_preparation():
    from data_prep.digits import load_digits_uint8

    images, labels = load_digits_uint8()
    tr = read_split(None, "train", 8)
    va = read_split("digits", "validation", 8)
    assert tr[0].shape == (1500, 8, 8, 1) and va[0].shape == (297, 8, 8, 1)
    assert canon(np.concatenate([tr[0], va[0]]), np.concatenate([tr[1], va[1]])) == canon(images, labels)
    ds = make_dataset(None, "train", 4, 16, dal=2, shard=(2, 1))
    x, y = next(iter(ds))
    assert x.shape == (16, 4, 4, 1) and x.dtype == tf.uint8 and y.dtype == tf.int32
    halves = [canon(*_records(make_dataset(None, "validation", 8, 50, shard=(2, i), repeat=False)))
              for i in range(2)]
    assert sorted(halves[0] + halves[1]) == canon(images[-297:], labels[-297:])


def test_reads_original_release_tfrecords_without_manifest(tmp_path):
    x = random_images(10, 16, 16, seed=1)
    y = np.arange(10) % 3
    attrs = np.where(np.random.RandomState(0).rand(10, 40) < 0.5, -1, 1)
    write_original_tfrecords(str(tmp_path), "train", x, y, 3, attrs)
    write_original_tfrecords(str(tmp_path), "validation", x[:4], y[:4], 1, attrs[:4])
    a, b, c = read_split(tmp_path, "train", 16, with_attr=True)
    assert canon(a, b, c) == canon(x, y, attrs)
    a, b = read_split(tmp_path, "validation", 16)
    assert canon(a, b) == canon(x[:4], y[:4])
    parts = [canon(*_records(make_dataset(str(tmp_path), "train", 16, 4, shard=(2, i),
                                          repeat=False))) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == canon(x, y)


def test_original_lsun_style_records_with_random_crops(tmp_path):
    """The original's LSUN RealNVP records are larger than the crop and share its rXX tag
    (96 -> r06 for 64 crops); here 48x48 records (r05) give 32x32 crops."""
    x = random_images(4, 48, 48, seed=3)
    write_original_tfrecords(str(tmp_path), "train", x, np.zeros(4), 2)
    with pytest.raises(DataError, match="rnd_crop"):
        make_dataset(str(tmp_path), "train", 32, 4)
    ds = make_dataset(str(tmp_path), "train", 32, 4, rnd_crop=True, repeat=False, seed=1)
    (crops, _), = [(a.numpy(), b) for a, b in ds]
    assert crops.shape == (4, 32, 32, 3)
    offsets = set()
    for c in crops:
        hits = [(k, i, j) for k in range(4) for i in range(17) for j in range(17)
                if (x[k, i:i + 32, j:j + 32] == c).all()]
        assert hits
        offsets.add(hits[0][1:])
    assert len(offsets) > 1  # crops are random, not all at one place


def test_make_dataset_argument_errors(cifar_dir):
    data_dir, _, _ = cifar_dir
    with pytest.raises(DataError, match="power of two"):
        make_dataset(data_dir, "train", 24, 4)
    with pytest.raises(DataError, match="no 16x16 records"):
        make_dataset(data_dir, "train", 16, 4)
    with pytest.raises(DataError, match="no split 'test'"):
        make_dataset(data_dir, "test", 32, 4)
    with pytest.raises(ValueError):
        make_dataset(data_dir, "train", 32, 4, shard=(2, 2))
    with pytest.raises(DataError, match="attr"):
        make_dataset(data_dir, "train", 32, 4, with_attr=True)
