"""Interrupted preparation: no complete-looking partial shard; a rerun resumes cleanly."""
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from data_fixtures import prep
from tfglow.data import DataError, make_dataset
from tfglow.data.manifest import STATE_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["digits", "--shards", "6", "--resolution", "8", "4"]

# Runs data_prep in a child process that dies abruptly (os._exit: no cleanup, like a kill -9)
# while writing its 700th record, i.e. inside train shard 2 of 6 (250 records each).
CRASH = textwrap.dedent("""
    import os, sys
    import data_prep.writer as w
    real, n = w.serialize_example, [0]
    def dying(*a, **k):
        n[0] += 1
        if n[0] == 2 * 700:  # two resolutions per record
            os._exit(9)
        return real(*a, **k)
    w.serialize_example = dying
    from data_prep.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _files(out):
    return {os.path.relpath(p, out): os.stat(p).st_ino
            for p in glob.glob(os.path.join(out, "*", "*.tfrecords"))}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("crash") / "d")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", CRASH, *ARGS, "--out", out, "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    return out


def test_crash_leaves_no_complete_looking_partial_shard(crashed):
    out = crashed
    assert not os.path.exists(os.path.join(out, "dataset.json"))
    assert os.path.exists(os.path.join(out, STATE_NAME))
    finished = sorted(_files(out))
    assert finished == [f"train/train-r{lg:02d}-s-{i:04d}-of-0006.tfrecords"
                        for lg in (2, 3) for i in (0, 1)]
    for name in finished:  # what carries a shard name is whole
        assert sum(1 for _ in tf.data.TFRecordDataset(os.path.join(out, name))) == 250
    partial = glob.glob(os.path.join(out, "train", ".*.partial-*"))
    assert len(partial) == 2  # the shard being written, under hidden names no glob matches
    assert not any(p.endswith(".tfrecords") for p in partial)
    with pytest.raises(DataError, match="did not finish"):
        make_dataset(out, "train", 8, 4)


def _copy(crashed, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(crashed, out, copy_function=os.link)  # hard links: same inodes
    return out


def test_rerun_resumes_and_matches_a_clean_run(crashed, tmp_path):
    out = _copy(crashed, tmp_path)
    before = _files(out)
    manifest = prep(*ARGS, "--out", out)
    after = _files(out)
    for name, inode in before.items():
        assert after[name] == inode  # finished shards were kept, not rewritten
    assert len(after) == 2 * (6 + 2)  # validation: 297 of 1,500 -> ceil(6 * 0.198) = 2 shards
    assert not glob.glob(os.path.join(out, "*", ".*"))
    assert not os.path.exists(os.path.join(out, STATE_NAME))
    clean = prep(*ARGS, "--out", tmp_path / "clean")

    def digests(m):
        return {(split, res, s["file"]): s["sha256"] for split, v in m["splits"].items()
                for res, e in v["resolutions"].items() for s in e["shards"]}

    assert digests(manifest) == digests(clean)
    assert manifest["fingerprint"] == clean["fingerprint"]
    x, _ = next(iter(make_dataset(out, "train", 4, 1500, repeat=False, verify=True)))
    assert x.shape == (1500, 4, 4, 1)


def test_exception_mid_shard_removes_its_temp_files(tmp_path, monkeypatch):
    import data_prep.writer as w

    real, n = w.serialize_example, [0]

    def failing(*a, **k):
        n[0] += 1
        if n[0] == 400:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(w, "serialize_example", failing)
    out = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        prep("digits", "--shards", "4", "--out", out)
    assert sorted(_files(out)) == ["train/train-r03-s-0000-of-0004.tfrecords"]  # 0..374 = shard 0
    assert not glob.glob(str(out / "*" / ".*partial*"))
    with open(out / STATE_NAME) as f:
        assert list(json.load(f)["splits"]["train"]["shards"]) == ["0"]
    monkeypatch.setattr(w, "serialize_example", real)
    assert prep("digits", "--shards", "4", "--out", out)["splits"]["train"]["count"] == 1500


def test_incomplete_run_with_other_options_is_replaced(crashed, tmp_path):
    """A half-finished directory from different options is wiped and rewritten (no mixing)."""
    out = _copy(crashed, tmp_path)
    manifest = prep("digits", "--shards", "2", "--out", out)
    assert sorted(_files(out)) == ["train/train-r03-s-0000-of-0002.tfrecords",
                                   "train/train-r03-s-0001-of-0002.tfrecords",
                                   "validation/validation-r03-s-0000-of-0001.tfrecords"]
    assert manifest["resolutions"] == [8]
