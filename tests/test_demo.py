"""tfglow.demo: the JSON endpoints (Starlette's TestClient), bad uploads, concurrency, the
directions tool and the command lines, on a tiny digits model exported in the session.
The real-browser test is tests/test_demo_browser.py."""
import io
import re
import struct
import threading
import zlib

import numpy as np
import pytest
import tensorflow as tf
from starlette.testclient import TestClient

from data_prep.source import SourceOptions, apply_resize, load_image
from demo_helpers import photo, png, tiny_export
from tfglow import evaluation, sampling
from tfglow.data import load_numpy, make_dataset
from tfglow.demo import directions as dirs_mod
from tfglow.demo.__main__ import main as demo_main
from tfglow.demo.app import create_app
from tfglow.demo.model import ExportedGlow
from tfglow.demo.uploads import decode_data_url


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def model(exported):
    return ExportedGlow.load(exported[0])


@pytest.fixture(scope="module")
def directions_file(exported, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dirs") / "directions.npz")
    assert dirs_mod.main(["--model", exported[0], "--data_dir", "digits", "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def directions(directions_file, model):
    return dirs_mod.load_directions([directions_file], model.latent_shapes)


@pytest.fixture(scope="module")
def client(model, directions):
    with TestClient(create_app(model, directions)) as c:
        yield c


def cropped(data, channels=1, size=8):
    """What data_prep --resize crop makes of image bytes (the reference for uploads)."""
    return apply_resize(load_image(data, "ref", channels),
                        SourceOptions(resize="crop", resolution=size), "ref")


def upload(client, array_or_bytes, **params):
    data = array_or_bytes if isinstance(array_or_bytes, bytes) else png(array_or_bytes)
    return client.post("/api/encode", content=data, params=params)


def image_of(response, key="image"):
    assert response.status_code == 200, response.text
    return decode_data_url(response.json()[key])


# ------------------------------------------------------------------------------ endpoints


def test_info_lists_model_and_directions(client, model):
    info = client.get("/api/info").json()
    assert info["model"]["image_size"] == 8 and info["model"]["channels"] == 1
    assert info["model"]["latent_shapes"] == [list(s) for s in model.latent_shapes]
    assert [d["name"] for d in info["directions"]] == [str(k) for k in range(10)]
    assert {d["kind"] for d in info["directions"]} == {"label"}
    assert info["alpha_range"] > 0 and info["limits"]["max_bytes"] > 0


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'id="file-a"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "/api/edit" in js.text
    assert client.get("/static/style.css").status_code == 200
    missing = client.get("/static/../app.py")
    assert missing.status_code == 404
    assert client.get("/api/nothing").json()["error"].endswith("Not Found")
    wrong = client.get("/api/encode")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_encode_crops_like_data_prep_and_zero_edit_is_exact(client):
    data = png(photo(45, 30, seed=3))                       # RGB, not square, not 8x8
    r = upload(client, data)
    body = r.json()
    want = cropped(data)                                      # grayscale 8x8 as data_prep makes it
    assert np.array_equal(image_of(r, "input"), want)
    assert np.array_equal(image_of(r, "reconstruction"), want) and body["exact"] is True
    assert "centre-cropped to 30x30 and resized to 8x8" in body["note"]
    edited = client.post("/api/edit", json={"id": body["id"], "alphas": {"3": 0.0}, "blend": None})
    assert np.array_equal(image_of(edited), want)            # encode -> zero move -> decode


def test_encode_bits_per_dim_is_the_models(client, exported):
    x = load_numpy("digits", "validation", 8)[0][:1]
    r = upload(client, x[0])
    want = evaluation.per_image_bits(exported[1], x).numpy()[0]
    assert r.json()["bits_per_dim"] == pytest.approx(float(want), abs=1e-4)
    assert r.json()["note"] == "" and np.array_equal(image_of(r, "input"), x[0])
    assert r.json()["latency_ms"] >= 0


def test_edit_moves_along_the_direction(client, model, directions):
    x = load_numpy("digits", "validation", 8)[0][3]
    r = upload(client, x).json()
    d3 = next(d for d in directions if d.name == "3")
    zs = model.encode(x[None])
    for alpha in (1.0, -0.5):
        got = image_of(client.post("/api/edit", json={"id": r["id"], "alphas": {"3": alpha}}))
        want = model.decode([z + np.float32(alpha) * d[None] for z, d in zip(zs, d3.latents)])[0]
        assert np.array_equal(got, want)
        assert not np.array_equal(got, x)
    both = image_of(client.post("/api/edit", json={"id": r["id"], "alphas": {"3": 1.0, "7": 1.0}}))
    d7 = next(d for d in directions if d.name == "7")
    want = model.decode([z + a[None] + b[None] for z, a, b in zip(zs, d3.latents, d7.latents)])[0]
    assert np.array_equal(both, want)


def test_blend_interpolates_latents(client, model):
    xs = load_numpy("digits", "validation", 8)[0][:2]
    a, b = (upload(client, x).json()["id"] for x in xs)
    for t in (0.0, 1.0):
        got = image_of(client.post("/api/edit", json={"id": a, "blend": {"id": b, "t": t}}))
        assert np.array_equal(got, xs[int(t)])                # the ends are the images exactly
    mid = image_of(client.post("/api/edit", json={"id": a, "blend": {"id": b, "t": 0.5}}))
    za, zb = model.encode(xs[:1]), model.encode(xs[1:])
    line = sampling.interpolate(za, zb, 3)                    # t = 0, 0.5, 1
    assert np.array_equal(mid, model.decode([z[1:2] for z in line])[0])
    assert not np.array_equal(mid, xs[0]) and not np.array_equal(mid, xs[1])


def test_sample_is_seeded_and_tempered(client, exported):
    first = client.post("/api/sample", json={"temperature": 0.7, "seed": 5})
    again = client.post("/api/sample", json={"temperature": 0.7, "seed": 5})
    assert np.array_equal(image_of(first), image_of(again))
    assert np.array_equal(image_of(first), exported[1].sample(1, 0.7, seed=5).numpy()[0])
    other = client.post("/api/sample", json={"temperature": 0.7, "seed": 6})
    assert not np.array_equal(image_of(first), image_of(other))
    cold = client.post("/api/sample", json={"temperature": 0.0, "seed": 5})
    assert not np.array_equal(image_of(first), image_of(cold))
    fresh = client.post("/api/sample", json={}).json()       # no seed: the server draws one
    assert fresh["temperature"] == 0.7 and isinstance(fresh["seed"], int)
    replay = client.post("/api/sample", json={"seed": fresh["seed"]})
    assert replay.json()["image"] == fresh["image"]


# ------------------------------------------------------------------------------ bad input


def _png_with_size(width, height):
    """A valid 1x1 PNG whose header claims width x height (CRC fixed), as a decompression bomb
    would: the pixels are never decoded."""
    data = bytearray(png(np.zeros([1, 1, 1], np.uint8)))
    ihdr = 8 + 8                                              # signature, then length + "IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _encoded(fmt, array, **kw):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


_BIG = photo(64, 64, seed=1)
BAD_UPLOADS = {
    "empty": (b"", 400, "empty upload"),
    "truncated_png": (png(_BIG)[:len(png(_BIG)) // 2], 400, "corrupt or truncated PNG"),
    "truncated_jpeg": (_encoded("JPEG", _BIG)[:-300], 400, "corrupt or truncated JPEG"),
    "text": (b"hello, this is not an image\n" * 4, 415, "not an image"),
    "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 415, "not an image"),
    "huge_dimensions": (_png_with_size(60000, 60000), 413, "too large|pixels"),
    "over_pixel_limit": (_png_with_size(8000, 6000), 413, r"8000x6000 = 48000000 pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads(client, case):
    data, status, message = BAD_UPLOADS[case]
    r = client.post("/api/encode", content=data)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert re.search(message, r.json()["error"]), r.json()["error"]
    assert "\n" not in r.json()["error"]


@pytest.mark.filterwarnings("ignore:demo upload")
def test_small_images_are_upsampled(client):
    r = upload(client, photo(5, 6, seed=5))
    assert r.status_code == 200 and "upsampled" in r.json()["note"]
    assert image_of(r, "input").shape == (8, 8, 1) and r.json()["exact"] is True


def test_other_formats_are_read(client):
    rgb = photo(20, 20, seed=2)
    for fmt, kw in (("GIF", {}), ("BMP", {}), ("WEBP", {"lossless": True}), ("TIFF", {})):
        data = _encoded(fmt, rgb, **kw)
        r = upload(client, data)
        assert r.status_code == 200, (fmt, r.text)
        assert np.array_equal(image_of(r, "input"), cropped(data)), fmt


def test_byte_and_pixel_limits(model):
    app = create_app(model, (), {"max_bytes": 2000, "max_pixels": 1000})
    with TestClient(app) as c:
        big = png(photo(100, 100, seed=4))
        assert len(big) > 2000
        r = c.post("/api/encode", content=big)               # declared Content-Length
        assert r.status_code == 413 and "limit is 2000 bytes" in r.json()["error"]
        r = c.post("/api/encode", content=iter([big[:1500], big[1500:]]))  # chunked, no length
        assert r.status_code == 413 and "over the limit of 2000 bytes" in r.json()["error"]
        small = png(np.full([40, 40, 3], 100, np.uint8))      # 1600 pixels in a few bytes
        assert len(small) <= 2000
        r = c.post("/api/encode", content=small)
        assert r.status_code == 413 and "limit is 1000 pixels" in r.json()["error"]
        assert c.post("/api/encode", content=png(np.full([30, 30, 3], 9, np.uint8))).status_code == 200


def test_uploads_write_no_files(client, monkeypatch):
    """Uploads are decoded in memory: no file is opened for writing while requests run."""
    import builtins
    import tempfile

    writes = []
    real_open = builtins.open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            writes.append(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "SpooledTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, lambda *a, _n=name, **k: writes.append(_n))
    r = upload(client, _encoded("JPEG", photo(300, 200, seed=9)))
    assert r.status_code == 200
    assert client.post("/api/edit", json={"id": r.json()["id"], "alphas": {"1": 0.5}}).status_code == 200
    assert client.post("/api/encode", content=BAD_UPLOADS["truncated_png"][0]).status_code == 400
    assert writes == []


def test_bad_requests(client):
    good = upload(client, photo(8, 8)).json()["id"]
    cases = [
        ("/api/edit", {"id": "nope"}, 404, "unknown or expired"),
        ("/api/edit", {}, 400, "id must be"),
        ("/api/edit", {"id": good, "alphas": {"smile": 1}}, 400, "unknown direction 'smile'"),
        ("/api/edit", {"id": good, "alphas": {"3": 100}}, 400, r"must be in \[-10, 10\]"),
        ("/api/edit", {"id": good, "alphas": {"3": "1"}}, 400, "must be a number"),
        ("/api/edit", {"id": good, "alphas": [1]}, 400, "alphas must be an object"),
        ("/api/edit", {"id": good, "blend": {"id": good, "t": 2}}, 400, r"blend.t must be in \[0, 1\]"),
        ("/api/edit", {"id": good, "blend": {"id": "gone"}}, 404, "blend.id: unknown"),
        ("/api/sample", {"temperature": -1}, 400, "temperature must be in"),
        ("/api/sample", {"seed": "abc"}, 400, "seed must be an integer"),
        ("/api/sample", {"seed": 2 ** 40}, 400, "seed must be in"),
    ]
    for path, body, status, message in cases:
        r = client.post(path, json=body)
        assert r.status_code == status, (body, r.text)
        assert re.search(message, r.json()["error"]), (body, r.json())
    for raw in (b"not json", b"[1, 2]", b'{"id": "%s", "alphas": {"3": NaN}}' % good.encode()):
        r = client.post("/api/edit", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, raw
    r = client.post("/api/sample", content=b"{" + b" " * 70000 + b"}")
    assert r.status_code == 413


# ------------------------------------------------------------------------------ concurrency


class BarrierModel:
    """An ExportedGlow whose encode waits until `n` encodes are running at once: a server that
    ran requests one at a time would never get there (BrokenBarrierError after the timeout)."""

    def __init__(self, model, n):
        self._model, self.barrier = model, threading.Barrier(n, timeout=60)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, images, y=None):
        self.barrier.wait()
        return self._model.encode(images, y)


def test_concurrent_encodes_return_their_own_results(model):
    n = 6
    xs = load_numpy("digits", "validation", 8)[0][10:10 + n]
    assert len({x.tobytes() for x in xs}) == n
    results = [None] * n
    with TestClient(create_app(BarrierModel(model, n))) as c:
        def go(i):
            results[i] = c.post("/api/encode", content=png(xs[i]))

        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for i, r in enumerate(results):
            assert r is not None and r.status_code == 200, r and r.text
            assert np.array_equal(image_of(r, "reconstruction"), xs[i])
            again = c.post("/api/edit", json={"id": r.json()["id"]})
            assert np.array_equal(image_of(again), xs[i])
    assert len({r.json()["id"] for r in results}) == n


def test_store_drops_the_oldest(model):
    with TestClient(create_app(model, (), {"max_images": 2})) as c:
        ids = [upload(c, photo(8, 8, seed=s)).json()["id"] for s in range(3)]
        assert c.post("/api/edit", json={"id": ids[0]}).status_code == 404
        assert all(c.post("/api/edit", json={"id": i}).status_code == 200 for i in ids[1:])


def test_model_is_loaded_once(exported, monkeypatch):
    calls = []
    real = tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    m = ExportedGlow.load(exported[0])
    with TestClient(create_app(m)) as c:
        i = upload(c, photo(9, 9)).json()["id"]
        assert c.post("/api/edit", json={"id": i}).status_code == 200
        assert c.post("/api/sample", json={"seed": 1}).status_code == 200
        assert c.get("/api/info").status_code == 200
    assert len(calls) == 1


def test_class_conditional_rgb_model(tmp_path_factory):
    path, glow = tiny_export(tmp_path_factory.getbasetemp(), ycond=True)
    m = ExportedGlow.load(path)
    x = np.repeat(load_numpy("digits", "validation", 8)[0][:1], 3, axis=-1)
    with TestClient(create_app(m)) as c:
        info = c.get("/api/info").json()["model"]
        assert info["ycond"] is True and info["channels"] == 3
        r = upload(c, x[0], y=3)
        assert r.json()["y"] == 3 and r.json()["exact"] is True
        want = evaluation.per_image_bits(glow, x, np.array([3], np.int32)).numpy()[0]
        assert r.json()["bits_per_dim"] == pytest.approx(float(want), abs=1e-4)
        assert np.array_equal(image_of(c.post("/api/edit", json={"id": r.json()["id"]})), x[0])
        data = png(photo(30, 50, seed=8))                    # RGB stays RGB, cropped and resized
        r = upload(c, data, y=1)
        assert np.array_equal(image_of(r, "input"), cropped(data, channels=3))
        assert np.array_equal(image_of(c.post("/api/edit", json={"id": r.json()["id"]})),
                              cropped(data, channels=3))
        s = image_of(c.post("/api/sample", json={"temperature": 0.5, "seed": 2, "y": 4}))
        assert np.array_equal(s, glow.sample(1, 0.5, y=np.array([4], np.int32), seed=2).numpy()[0])
        assert upload(c, x[0], y=10).status_code == 400
        assert "y must be an integer" in upload(c, x[0], y="a").json()["error"]


# ------------------------------------------------------------------------------ directions


def test_directions_follow_evaluate_formula(directions_file, exported, model):
    glow = exported[1]
    with np.load(directions_file) as f:
        assert [str(n) for n in f["names"]] == [str(k) for k in range(10)]
        assert list(f["kind"]) == ["label"] * 10 and list(f["index"]) == list(range(10))
        labels = load_numpy("digits", "train", 8)[1]
        assert list(f["n_with"]) == [int((labels == k).sum()) for k in range(10)]
        assert list(f["n_with"] + f["n_without"]) == [len(labels)] * 10
        stored = [f[f"z{i}"] for i in range(len(model.latent_shapes))]
        f_n_with = f["n_with"]
    for k in (7,):  # evaluate.py --manipulate 7 on the Glow model itself
        batches = make_dataset("digits", "train", 8, 500, shuffle=False, repeat=False,
                               drop_remainder=False)
        ref, n_with, _ = sampling.attribute_direction(
            glow, (tuple(t.numpy() for t in b) for b in batches), "label", k)
        assert n_with == f_n_with[k]
        for level, r in enumerate(ref):
            np.testing.assert_allclose(stored[level][k], r, atol=2e-5)


def test_directions_cli_on_celeba_attributes(tmp_path, tmp_path_factory):
    """All 40 attribute directions of a (tiny, random) CelebA-HQ data_prep directory, through
    a class-conditional RGB export; each equals mean(eps | attr) - mean(eps | no attr)."""
    from data_fixtures import prep, write_celeba

    path, _ = tiny_export(tmp_path_factory.getbasetemp(), ycond=True)
    img_dir, _, _ = write_celeba(str(tmp_path), n=40, size=16)
    data = tmp_path / "celeba"
    prep("celeba", "--source", img_dir, "--out", data, "--resolution", 8)
    out = str(tmp_path / "celeba_dirs.npz")
    assert dirs_mod.main(["--model", path, "--data_dir", str(data), "--out", out]) == 0
    m = ExportedGlow.load(path)
    found = dirs_mod.load_directions([out], m.latent_shapes)
    assert len(found) == 40 and found[31].name == "Smiling" and found[31].kind == "attr"
    x, y, attr = load_numpy(str(data), "train", 8, with_attr=True)
    zs = m.encode(x, y)
    has = attr[:, 31] > 0
    for level, z in enumerate(zs):
        want = z[has].astype(np.float64).mean(0) - z[~has].astype(np.float64).mean(0)
        np.testing.assert_allclose(found[31].latents[level], want, atol=1e-5)
    with TestClient(create_app(m, found)) as c:
        assert len(c.get("/api/info").json()["directions"]) == 40
        i = upload(c, photo(16, 16)).json()["id"]
        moved = c.post("/api/edit", json={"id": i, "alphas": {"Smiling": 1.0, "Young": -1.0}})
        assert moved.status_code == 200


def test_compute_directions_with_attributes():
    """Attribute (CelebA-style, +1/-1) and class directions from one pass, on a fake encoder
    whose latents are the images themselves, against the means computed directly."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(50, 2, 2, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    attr = np.where(rng.random((50, 4)) > 0.5, 1, -1)
    batches = [(images[s:s + 16], labels[s:s + 16], attr[s:s + 16]) for s in range(0, 50, 16)]
    wanted = [("Smiling", "attr", 2), ("1", "label", 1)]
    found, n_with, n_without = dirs_mod.compute_directions(
        lambda x, y: [x], [(2, 2, 1)], batches, wanted)
    masks = [attr[:, 2] > 0, labels == 1]
    for d, m, w in zip(found, masks, n_with):
        np.testing.assert_allclose(d.latents[0], images[m].mean(0) - images[~m].mean(0), atol=1e-6)
        assert w == m.sum()
    with pytest.raises(ValueError, match=r"not so for 7 \(0 with, 50 without\)"):
        dirs_mod.compute_directions(lambda x, y: [x], [(2, 2, 1)], batches, [("7", "label", 7)])


def test_load_directions_formats_and_errors(tmp_path, model, directions):
    shapes = model.latent_shapes
    single = str(tmp_path / "manipulate_Smiling.npz")        # evaluate.py --manipulate's file
    sampling.save_direction(single, directions[3].latents, attribute="Smiling", kind="attr", index=31)
    both = str(tmp_path / "all.npz")
    dirs_mod.save_directions(both, directions[:2])
    loaded = dirs_mod.load_directions([single, both, both], shapes)
    assert [d.name for d in loaded] == ["Smiling", "0", "1", "0 (2)", "1 (2)"]
    assert loaded[0].kind == "attr" and loaded[0].index == 31
    np.testing.assert_array_equal(loaded[0].latents[1], directions[3].latents[1])
    wrong = str(tmp_path / "wrong.npz")
    np.savez(wrong, names=np.array(["a"]), z0=np.zeros([1, 4, 4, 3]), z1=np.zeros([1, 2, 2, 8]))
    with pytest.raises(ValueError, match=r"wrong.npz: z0 is \[1, 4, 4, 3\]; this model needs \[1, 4, 4, 2\]"):
        dirs_mod.load_directions([wrong], shapes)
    bad_single = str(tmp_path / "manipulate_x.npz")
    np.savez(bad_single, z0=np.zeros([4, 4, 2]))
    with pytest.raises(ValueError, match="manipulate_x.npz: direction does not fit the model"):
        dirs_mod.load_directions([bad_single], shapes)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npz: not a directions .npz"):
        dirs_mod.load_directions([str(junk)], shapes)


# ------------------------------------------------------------------------------ command lines


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err, err
    assert all(n in err[-1] for n in needles), err


def test_directions_cli_errors(exported, tmp_path, capsys):
    run = dirs_mod.main
    _one_line_error(capsys, run(["--model", str(tmp_path / "none"), "--data_dir", "digits",
                                 "--out", str(tmp_path / "d.npz")]), "--model", "saved_model.pb")
    _one_line_error(capsys, run(["--model", exported[0], "--data_dir", str(tmp_path / "nodata"),
                                 "--out", str(tmp_path / "d.npz")]), "--data_dir", "nodata")
    _one_line_error(capsys, run(["--model", exported[0], "--data_dir", "digits",
                                 "--out", str(tmp_path / "d.txt")]), "--out", ".npz")
    _one_line_error(capsys, run(["--model", exported[0], "--data_dir", "digits", "--n_images", "3",
                                 "--out", str(tmp_path / "d.npz")]), "with and without")


def test_demo_cli_errors(exported, directions_file, tmp_path, capsys):
    _one_line_error(capsys, demo_main(["--model", str(tmp_path / "none")]), "--model", "none")
    _one_line_error(capsys, demo_main(["--model", exported[0], "--directions",
                                       str(tmp_path / "d.npz")]), "--directions", "no such file")
    wrong = str(tmp_path / "wrong.npz")
    np.savez(wrong, names=np.array(["a"]), z0=np.zeros([1, 1, 1, 1]))
    _one_line_error(capsys, demo_main(["--model", exported[0], "--directions", wrong]),
                    "--directions", "wrong.npz: z0")
    _one_line_error(capsys, demo_main(["--model", exported[0], "--port", "0"]), "--port")
    _one_line_error(capsys, demo_main(["--model", exported[0], "--max_bytes", "0"]), "--max_bytes")
    (tmp_path / "notexport").mkdir()
    (tmp_path / "notexport" / "saved_model.pb").write_bytes(b"junk")
    _one_line_error(capsys, demo_main(["--model", str(tmp_path / "notexport")]),
                    "--model", "cannot load the SavedModel")
