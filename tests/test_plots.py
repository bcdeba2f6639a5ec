"""tfglow.plots and evaluate.py --plots: the numbers behind the figures, and the files."""
import numpy as np
import pytest
from PIL import Image

import evaluate
from tfglow import plots
from tfglow.training.logs import ResultLogger


def write_run_logs(run, train, test):
    """train.txt / test.txt as train.py writes them (hparams line first)."""
    for name, rows in (("train.txt", train), ("test.txt", test)):
        log = ResultLogger(str(run / name), {"problem": "digits"})
        for r in rows:
            log.log(**r)
        log.close()


def png(path):
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert image.std() > 5, f"{path} is blank"
    return image


def test_curves_read_the_logs(tmp_path):
    write_run_logs(tmp_path, [{"epoch": e, "bits_x": 5.0 - e} for e in (1, 2, 3)],
                   [{"epoch": 2, "bits_x": 3.5, "n_images": 10}, {"epoch": 2, "bits_x": 3.4}])
    hparams, records = plots.read_log(str(tmp_path / "train.txt"))
    assert hparams == {"problem": "digits"} and len(records) == 3
    assert plots.curve(records) == [(1.0, 4.0), (2.0, 3.0), (3.0, 2.0)]
    # The last record of an epoch wins (a resumed run may repeat one).
    assert plots.curve(plots.read_log(str(tmp_path / "test.txt"))[1]) == [(2.0, 3.4)]
    png(plots.learning_curves([str(tmp_path)], str(tmp_path / "curves.png")))
    with pytest.raises(FileNotFoundError, match="train.txt"):
        plots.learning_curves([str(tmp_path / "none")], str(tmp_path / "x.png"))


def test_mean_and_spread_use_the_shared_epochs():
    x, mean, lo, hi = plots.mean_and_spread([[(1, 3.0), (2, 2.0), (3, 1.0)],
                                             [(1, 5.0), (2, 4.0)]])
    np.testing.assert_array_equal(x, [1, 2])
    np.testing.assert_allclose(mean, [4.0, 3.0])
    np.testing.assert_allclose(lo, [3.0, 2.0])
    np.testing.assert_allclose(hi, [5.0, 4.0])


def test_image_figures(tmp_path, rng):
    grids = {t: rng.integers(0, 256, (8, 8, 8, 1), dtype=np.uint8) for t in (0.0, 0.5, 1.0)}
    png(plots.temperature_sweep(grids, str(tmp_path / "sweep.png")))
    strips = [rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8) for _ in range(2)]
    png(plots.image_rows(strips, str(tmp_path / "rows.png"), row_labels=["a", "b"],
                         col_labels=list("12345")))
    with pytest.raises(ValueError, match="uint8"):
        plots.image_rows([np.zeros((2, 8, 8, 3), np.float32)], str(tmp_path / "bad.png"))


def test_evaluate_plots_writes_every_figure(tmp_path):
    from test_evaluate import make_run

    run = tmp_path / "run"
    make_run(str(run))
    write_run_logs(run, [{"epoch": e, "bits_x": 4.0 - 0.1 * e} for e in range(1, 5)],
                   [{"epoch": e, "bits_x": 4.1 - 0.1 * e} for e in (2, 4)])
    out = tmp_path / "out"
    results = evaluate.run(evaluate.build_parser().parse_args(
        ["--restore_path", str(run), "--logdir", str(out), "--plots", "--interpolate",
         "--n_interpolate", "2", "--interpolate_steps", "4", "--manipulate", "3",
         "--n_manipulate", "2", "--alphas=-1,0,1", "--temperatures", "0,0.7,1"]))
    names = sorted(p.name for p in out.glob("plot_*.png"))
    assert names == ["plot_curves.png", "plot_interpolation.png", "plot_manipulate_3.png",
                     "plot_temperatures.png"]
    assert sorted(results["sample"]) == [0.0, 0.7, 1.0]   # samples drawn for the sweep
    for name in names:
        png(out / name)
