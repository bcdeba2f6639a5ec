"""Tiny data sets written in each upstream format, for the data tests.

Every writer returns the pixels / labels it wrote so tests can compare exactly.
"""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np


def rng(seed=0):
    return np.random.RandomState(seed)


def random_images(n, h, w, c=3, seed=0):
    return rng(seed).randint(0, 256, size=(n, h, w, c)).astype(np.uint8)


def canon(images, labels, attrs=None):
    """Order-free comparison key: sorted (label, attr, pixel bytes) tuples."""
    attrs = [None] * len(images) if attrs is None else [tuple(a) for a in attrs]
    return sorted((int(y), a, x.tobytes()) for x, y, a in zip(images, labels, attrs))


# --- CIFAR-10 -------------------------------------------------------------------------------

def _cifar_batch(images, labels):
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # planar R, G, B rows
    return {b"batch_label": b"fixture", b"labels": [int(v) for v in labels], b"data": data,
            b"filenames": [b"img%d.png" % i for i in range(len(images))]}


def write_cifar(root, per_batch=4, n_test=6, seed=0, as_tar=True, corrupt=None):
    """cifar-10-python.tar.gz (or the extracted folder) with 5 train batches and test_batch.

    corrupt: None | "label" (a label 10) | "truncate" (test_batch cut short) | "layout"
    (batches at the archive root, not in cifar-10-batches-py/)."""
    n_train = 5 * per_batch
    x = random_images(n_train + n_test, 32, 32, seed=seed)
    y = rng(seed + 1).randint(0, 10, size=n_train + n_test)
    if corrupt == "label":
        y[3] = 10
    files = {}
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        files[f"data_batch_{b + 1}"] = pickle.dumps(_cifar_batch(x[sl], y[sl]), protocol=2)
    files["test_batch"] = pickle.dumps(_cifar_batch(x[n_train:], y[n_train:]), protocol=2)
    if corrupt == "truncate":
        files["test_batch"] = files["test_batch"][:-500]
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    files["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2)
    prefix = "" if corrupt == "layout" else "cifar-10-batches-py/"
    if as_tar:
        path = os.path.join(root, "cifar-10-python.tar.gz")
        with tarfile.open(path, "w:gz") as tar:
            for name, blob in files.items():
                info = tarfile.TarInfo(prefix + name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        path = os.path.join(root, "cifar-10-batches-py")
        os.makedirs(path, exist_ok=True)
        for name, blob in files.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(blob)
    return path, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


# --- MNIST idx ------------------------------------------------------------------------------

def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root, n_train=12, n_test=5, gz=True, seed=0):
    os.makedirs(root, exist_ok=True)
    r = rng(seed)
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        x = np.zeros((n, 28, 28), np.uint8)
        x[:, 4:24, 4:24] = r.randint(1, 256, size=(n, 20, 20))  # MNIST borders are 0
        y = r.randint(0, 10, size=n).astype(np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{stem}-{kind}-ubyte" + (".gz" if gz else "")
            blob = idx_bytes(arr)
            with open(os.path.join(root, name), "wb") as f:
                f.write(gzip.compress(blob) if gz else blob)
        out[stem] = (x, y)
    return root, out["train"], out["t10k"]


# --- image files ----------------------------------------------------------------------------

def save_png(path, image):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = image[..., 0] if image.shape[2] == 1 else image
    Image.fromarray(arr).save(path, format="PNG")


def write_image_folder(root, classes=("cat", "dog", "emu"), per_class=4, size=16, seed=0):
    """root/<class>/<i>.png; returns (images, labels) with labels = sorted class index."""
    images, labels = [], []
    for k, cls in enumerate(sorted(classes)):
        xs = random_images(per_class, size, size, seed=seed + k)
        for i, x in enumerate(xs):
            save_png(os.path.join(root, cls, f"{i}.png"), x)
            images.append(x)
            labels.append(k)
    return root, np.stack(images), np.array(labels)


ATTR_NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips "
              "Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin "
              "Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open "
              "Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
              "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
              "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def write_attr_file(path, names, attrs, count=None):
    """list_attr_celeba.txt layout: count line, 40 names, then 'file  v1 .. v40' rows."""
    with open(path, "w") as f:
        f.write(f"{len(names) if count is None else count}\n")
        f.write(" ".join(ATTR_NAMES) + " \n")
        for n, a in zip(names, attrs):
            f.write(n + " " + " ".join(f"{int(v):2d}" for v in a) + "\n")


def write_celeba(root, n=10, size=16, seed=0, hq_names=False):
    """CelebA-HQ style folder of png images plus list_attr_celeba.txt (in the parent folder,
    where the CelebA release keeps it). hq_names: images named 00000.png.. and matched via
    image_list.txt to original CelebA names."""
    img_dir = os.path.join(root, "celeba-hq")
    x = random_images(n, size, size, seed=seed)
    attrs = np.where(rng(seed + 5).rand(n, 40) < 0.5, -1, 1)
    orig_names = [f"{(7 * i + 3):06d}.jpg" for i in range(n)]  # CelebA file names
    for i in range(n):
        name = f"{i:05d}.png" if hq_names else orig_names[i].replace(".jpg", ".png")
        save_png(os.path.join(img_dir, name), x[i])
    # Extra rows for images not in the HQ subset, as the real file has.
    extra = [f"{900000 + i:06d}.jpg" for i in range(3)]
    write_attr_file(os.path.join(root, "list_attr_celeba.txt"), orig_names + extra,
                    np.concatenate([attrs, np.ones((3, 40), int)]))
    if hq_names:
        with open(os.path.join(root, "image_list.txt"), "w") as f:
            f.write("idx         orig_idx    orig_file   proc_md5  final_md5\n")
            for i in range(n):
                f.write(f"{i} {7 * i + 2} {orig_names[i]} aaaa bbbb\n")
    return img_dir, x, attrs


# --- downsampled ImageNet npz ---------------------------------------------------------------

def write_imagenet_npz(root, side=32, batches=3, per_batch=4, n_val=5, seed=0, bad_label=False):
    os.makedirs(root, exist_ok=True)
    r = rng(seed)
    out = {"train": [], "validation": []}

    def save(path, n):
        x = random_images(n, side, side, seed=r.randint(1 << 30))
        y = r.randint(1, 1001, size=n)
        if bad_label:
            y[0] = 0
        np.savez(path, data=x.transpose(0, 3, 1, 2).reshape(n, -1), labels=list(y),
                 mean=np.zeros(3 * side * side))
        return x, y

    tr = os.path.join(root, f"Imagenet{side}_train_npz")
    os.makedirs(tr, exist_ok=True)
    for b in range(1, batches + 1):
        out["train"].append(save(os.path.join(tr, f"train_data_batch_{b}.npz"), per_batch))
    va = os.path.join(root, f"Imagenet{side}_val_npz")
    os.makedirs(va, exist_ok=True)
    out["validation"].append(save(os.path.join(va, "val_data.npz"), n_val))
    return root, {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
                  for k, v in out.items()}


def write_imagenet_png(root, side=32, n_train=6, n_val=3, seed=0):
    out = {}
    for split, folder, n in (("train", f"train_{side}x{side}", n_train),
                             ("validation", f"valid_{side}x{side}", n_val)):
        x = random_images(n, side, side, seed=seed + len(split))
        for i in range(n):
            save_png(os.path.join(root, folder, f"{i:08d}.png"), x[i])
        out[split] = x
    return root, out


# --- LSUN lmdb ------------------------------------------------------------------------------

def encode(image, fmt):
    from PIL import Image

    buf = io.BytesIO()
    kwargs = {"lossless": True} if fmt == "WEBP" else {"quality": 95}
    Image.fromarray(image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_lmdb(path, blobs):
    """An lmdb folder with keys -> encoded image bytes (LSUN keys are hex hashes)."""
    import hashlib

    import lmdb

    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, blob in enumerate(blobs):
            txn.put(hashlib.sha1(b"%d" % i).hexdigest().encode(), blob)
    env.close()
    return path


def lsun_images(n, h, w, seed=0):
    """Smooth-ish random photos (so lossy codecs and resizing behave like on photos)."""
    base = random_images(n, h // 4 + 1, w // 4 + 1, seed=seed)
    return np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)[:, :h, :w]


# --- the original release's TFRecords (no manifest) -----------------------------------------

def write_original_tfrecords(data_dir, split, images, labels, shards, attrs=None):
    """Shards `<split>/<split>-rXX-s-SSSS-of-NNNN.tfrecords` as the original's writers produced
    them, built here directly with tf.train.Example (independent of tfglow's writer)."""
    import tensorflow as tf

    folder = os.path.join(data_dir, split)
    os.makedirs(folder, exist_ok=True)
    lg = int(np.log2(images.shape[1]))
    parts = np.array_split(np.arange(len(images)), shards)
    for s, idx in enumerate(parts):
        name = os.path.join(folder, "%s-r%02d-s-%04d-of-%04d.tfrecords" % (split, lg, s, shards))
        with tf.io.TFRecordWriter(name) as w:
            for i in idx:
                feats = {
                    "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=images[i].shape)),
                    "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[images[i].tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(labels[i])])),
                }
                if attrs is not None:
                    feats["attr"] = tf.train.Feature(int64_list=tf.train.Int64List(value=attrs[i]))
                w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return folder


# --- running data_prep in-process -----------------------------------------------------------

def prep(*args):
    """Runs `python -m data_prep ARGS --quiet` in-process; returns the manifest."""
    import json

    from data_prep.cli import build_parser, run

    parsed = build_parser().parse_args([str(a) for a in args] + ["--quiet"])
    assert run(parsed) == 0
    with open(os.path.join(parsed.out, "dataset.json")) as f:
        return json.load(f)


def read_split(data_dir, split, resolution, **kw):
    from tfglow.data import load_numpy

    return load_numpy(None if data_dir is None else str(data_dir), split, resolution, **kw)


def box_reference(images, size):
    """Independent 2x2-box reference: floor of the float mean over each block."""
    n, h, w, c = images.shape
    k = h // size
    blocks = images.astype(np.float64).reshape(n, size, k, size, k, c)
    return np.floor(blocks.mean(axis=(2, 4)) + 1e-9).astype(np.uint8)


def raw_records(path):
    """All records of one TFRecord file parsed with plain protobuf: [(image, label, attr)]."""
    import tensorflow as tf

    out = []
    for r in tf.data.TFRecordDataset(path):
        ex = tf.train.Example.FromString(r.numpy()).features.feature
        shape = list(ex["shape"].int64_list.value)
        img = np.frombuffer(ex["data"].bytes_list.value[0], np.uint8).reshape(shape)
        attr = list(ex["attr"].int64_list.value) if "attr" in ex else None
        out.append((img, ex["label"].int64_list.value[0], attr))
    return out
