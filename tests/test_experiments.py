"""The paper kit: the Figure 3 runner on two tiny variants, the Table 2 plan and printer."""
import json

import numpy as np
import pytest
from PIL import Image

from experiments import figure3, table2

TINY = ["--train_flag=--depth=1", "--train_flag=--width=8", "--train_flag=--n_train=64",
        "--train_flag=--n_batch_train=16", "--train_flag=--n_batch_init=32",
        "--train_flag=--n_test=64", "--train_flag=--epochs_full_sample=1000",
        "--train_flag=--deterministic"]


@pytest.mark.slow
def test_figure3_runner_trains_variants_and_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "fig3"
    args = ["--out", str(out), "--epochs", "2", "--seeds", "0", "--jobs", "2",
            "--variants", "reverse-additive,1x1conv-affine", *TINY]
    result = figure3.main(args)
    data = json.load(open(str(out) + ".json"))
    assert data == json.loads(json.dumps(result))
    assert sorted(data["variants"]) == ["1x1conv-affine", "reverse-additive"]
    for key, v in data["variants"].items():
        curve = v["curves"]["0"]
        assert [e for e, _ in curve] == [1, 2]             # validation every epoch
        test = [json.loads(l) for l in open(tmp_path / "fig3_runs" / f"{key}_seed0" / "test.txt")][1:]
        assert [r["bits_x"] for r in test] == [b for _, b in curve]
        assert v["final_test_bits_per_dim"]["mean"] == curve[-1][1]
        assert (v["flow_permutation"], v["flow_coupling"]) == figure3.VARIANTS[key]
    hp = json.load(open(tmp_path / "fig3_runs" / "reverse-additive_seed0" / "hparams.json"))
    assert (hp["flow_permutation"], hp["flow_coupling"], hp["depth"], hp["epochs_full_valid"]) == (0, 0, 1, 1)
    # Only the two variants ran: the ordering compares nothing rather than counting failures.
    assert data["ordering"]["per_coupling"]["affine"]["seeds_compared"] == 0
    image = np.asarray(Image.open(str(out) + ".png").convert("RGB"))
    assert image.shape[0] > 100 and image.std() > 5
    # Finished runs are read, not retrained.
    mtime = (tmp_path / "fig3_runs" / "reverse-additive_seed0" / "train.txt").stat().st_mtime
    capsys.readouterr()
    figure3.main(args)
    assert "started" not in capsys.readouterr().out
    assert (tmp_path / "fig3_runs" / "reverse-additive_seed0" / "train.txt").stat().st_mtime == mtime


def test_figure3_ordering_counts_seeds():
    def c(v):
        return [(1, v + 1.0), (2, v)]

    curves = {"reverse-additive": {0: c(3.0), 1: c(3.0)}, "shuffle-additive": {0: c(2.5), 1: c(2.0)},
              "1x1conv-additive": {0: c(2.0), 1: c(2.5)},
              "reverse-affine": {0: c(2.9), 1: c(3.1)}, "shuffle-affine": {0: c(2.4), 1: c(2.0)},
              "1x1conv-affine": {0: c(1.9), 1: c(1.5)}}
    o = figure3.ordering(curves)
    assert o["per_coupling"]["additive"] == {"seeds_compared": 2, "conv_lt_shuffle_lt_reverse": 1,
                                             "conv_best": 1}
    assert o["per_coupling"]["affine"] == {"seeds_compared": 2, "conv_lt_shuffle_lt_reverse": 2,
                                           "conv_best": 2}
    assert o["affine_better"]["reverse"] == {"seeds_compared": 2, "affine_le_additive": 1}
    assert o["affine_better"]["1x1 conv"]["affine_le_additive"] == 2


def test_figure3_rejects_unknown_variants():
    with pytest.raises(SystemExit, match="choose from"):
        figure3.main(["--out", "/tmp/x", "--variants", "lu-affine"])


def _fake_run(path, hparams, tests=None, eval_bpd=None):
    path.mkdir(parents=True)
    (path / "hparams.json").write_text(json.dumps(hparams))
    if tests is not None:
        lines = [json.dumps(hparams)] + [json.dumps(t) for t in tests]
        (path / "test.txt").write_text("\n".join(lines) + "\n")
    if eval_bpd is not None:
        (path / "eval").mkdir()
        (path / "eval" / "eval.json").write_text(json.dumps({"bits_per_dim": eval_bpd}))


def test_table2_results_put_finished_runs_beside_the_paper(tmp_path, capsys):
    cifar, tower = tmp_path / "cifar", tmp_path / "tower"
    _fake_run(cifar, {"problem": "cifar10", "image_size": 32, "data_dir": "data/cifar10"},
              tests=[{"epoch": 50, "bits_x": 3.41}, {"epoch": 100, "bits_x": 3.37},
                     {"epoch": 150, "bits_x": 3.39}])
    _fake_run(tower, {"problem": "lsun_realnvp", "image_size": 64,
                      "data_dir": "data/lsun_realnvp/tower"}, tests=[], eval_bpd=2.5)
    lines = table2.results(table2.argparse.Namespace(runs=[str(cifar), str(tower)]))
    assert [(l["row"], l["bits_per_dim"], l["paper"]) for l in lines] == [
        ("CIFAR-10", 3.37, 3.35), ("LSUN tower", 2.5, 2.46)]
    assert lines[0]["source"] == "test.txt epoch 100" and lines[1]["source"] == "eval.json"
    assert lines[0]["difference"] == pytest.approx(0.02)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and "3.370" in printed[1] and "+0.020" in printed[1]


def test_table2_plan_has_every_row_and_its_commands(tmp_path):
    from data_prep.cli import build_parser as data_prep_parser
    from tfglow.training.hparams import build_parser, resolve

    plan = table2.plan(table2.argparse.Namespace(gpu_tflops=10.0, gpu_utilisation=0.5, gpus=4,
                                                 json="", timing=str(tmp_path / "none.json")))
    assert [p["target"] for p in plan] == [3.35, 4.09, 3.81, 2.38, 2.46, 2.67]
    for p, row in zip(plan, table2.ROWS):
        data_prep_parser().parse_args(p["data_prep"].split()[3:])
        hps = resolve(build_parser().parse_args(p["train_single_node"].split()[2:]))
        cfg = hps.model_config()
        import tfglow
        preset = tfglow.GlowConfig.preset(row.preset)
        assert (cfg.image_size, cfg.n_levels, cfg.depth, cfg.flow_coupling, cfg.learntop) == (
            preset.image_size, preset.n_levels, preset.depth, preset.flow_coupling, preset.learntop)
        assert p["train_multi_node"].startswith("mpiexec -n 8 python train.py")
        # FLOPs -> time: images per epoch x FLOPs / (GPUs x peak x utilisation).
        assert p["gpu_minutes_per_epoch"] * 60 == pytest.approx(
            row.images_per_epoch * p["train_gflop_per_image"] / (4 * 10.0e3 * 0.5))
