"""benchmarks/ablation.py: Flow++ Table 2 variants trained by train.py, the table and the plot
agree with each run's test.txt."""
import json

import numpy as np
import pytest

from test_train_flowpp import TINY_MODEL


@pytest.mark.slow
def test_two_variants_give_a_table_and_a_plot_of_their_runs(tmp_path):
    from PIL import Image

    from benchmarks.ablation import main

    train = ["--", "--n_train", "96", "--n_batch_train", "16", "--n_batch_init", "32",
             "--n_test", "32", "--warmup_steps", "2", "--deterministic",
             "--model_set", *TINY_MODEL]
    results = main(["--problem", "digits", "--steps", "6", "--variants", "full",
                    "uniform_dequant", "--out", str(tmp_path), *train])
    table = json.loads((tmp_path / "ablation.json").read_text())["variants"]
    md = (tmp_path / "ablation.md").read_text()
    assert set(table) == {"full", "uniform_dequant"}
    for name, row in table.items():
        tests = [json.loads(l) for l in open(tmp_path / name / "test.txt")][1:]
        assert row["curve"] == [[6, tests[-1]["bits_x"]]] == [list(p) for p in results[name]["curve"]]
        assert f"| {name} | {tests[-1]['bits_x']:.4f} |" in md
    assert table["uniform_dequant"]["family_config"]["dequantization"] == "uniform"
    assert table["full"]["family_config"]["dequantization"] == "variational"
    assert table["full"]["family_config"]["filters"] == 8   # the tiny --model_set kept
    png = np.asarray(Image.open(tmp_path / "ablation.png"))
    assert png.ndim == 3 and png.shape[0] > 100 and png.std() > 0
