"""Figures from runs and from evaluate.py's outputs (matplotlib, no display needed).

    learning_curves(["runs/a", "runs/b"], "curves.png")      train/test bits/dim per epoch
    curves_with_spread({"1x1 conv, affine": [[(epoch, bpd), ...] per seed]}, "fig3.png")
    temperature_sweep({0.0: imgs, 0.5: imgs, ...}, "sweep.png")   Glow Figure 8
    image_rows([strip, ...], "interp.png", row_labels=..., col_labels=...)   Figures 5 and 6

A run's train.txt / test.txt are JSON lines (the original's ResultLogger): the first line holds
the hyper-parameters, each further line one epoch (train) or one validation (test). Every
figure is written atomically (temporary file, then rename) and returned as its path.
"""
import json
import os
import tempfile

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt
    return plt


def read_log(path):
    """(hparams dict, [record dict, ...]) of a train.txt / test.txt (JSON lines)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is it a train.py --logdir?")
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty")
    return lines[0], lines[1:]


def curve(records, metric="bits_x", x="epoch"):
    """[(x, value), ...] of the records holding `metric`, sorted by x (last record per x)."""
    points = {}
    for r in records:
        if metric in r and x in r:
            points[float(r[x])] = float(r[metric])
    return sorted(points.items())


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _pyplot().close(fig)
    return path


def learning_curves(run_dirs, path, metric="bits_x", labels=None, title=None):
    """Train (dashed) and test (solid, markers) `metric` against epochs, one colour per run.

    run_dirs: train.py --logdir folders (test.txt may be missing: train only).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    for i, (run, label) in enumerate(zip(run_dirs, labels)):
        colour = f"C{i % 10}"
        train = curve(read_log(os.path.join(run, "train.txt"))[1], metric)
        if train:
            ax.plot(*zip(*train), "--", color=colour, alpha=0.7, label=f"{label} train")
        test_path = os.path.join(run, "test.txt")
        if os.path.exists(test_path):
            test = curve(read_log(test_path)[1], metric)
            if test:
                ax.plot(*zip(*test), "o-", color=colour, label=f"{label} test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits/dim" if metric in ("bits_x", "loss") else metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def mean_and_spread(series):
    """Several [(x, y), ...] -> (x [K], mean [K], min [K], max [K]) over the x all share."""
    common = sorted(set.intersection(*[set(x for x, _ in s) for s in series])) if series else []
    values = np.array([[dict(s)[x] for x in common] for s in series], dtype=np.float64)
    if not common:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    return np.array(common), values.mean(0), values.min(0), values.max(0)


def curves_with_spread(groups, path, xlabel="epoch", ylabel="test bits/dim", title=None,
                       styles=None, colours=None):
    """One line per group (mean over its runs) with the min-max band (Glow Figure 3).

    groups: {label: [[(x, y), ...] per run]}; styles: {label: matplotlib format string};
    colours: {label: matplotlib colour} (default: one per group).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, series) in enumerate(groups.items()):
        x, mean, lo, hi = mean_and_spread(series)
        if not len(x):
            continue
        colour = (colours or {}).get(label, f"C{i % 10}")
        fmt = (styles or {}).get(label, "-")
        ax.plot(x, mean, fmt, color=colour, label=f"{label} (n={len(series)})")
        if len(series) > 1:
            ax.fill_between(x, lo, hi, color=colour, alpha=0.18, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _as_rgb(images):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be uint8 [N, H, W, 1 or 3], got {images.dtype} {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def image_rows(rows, path, row_labels=None, col_labels=None, title=None, cell_inches=0.7):
    """A grid figure: each row a uint8 [N, H, W, C] strip (interpolation, manipulation, or the
    samples at one temperature), with optional row and column labels."""
    plt = _pyplot()
    rows = [_as_rgb(r) for r in rows]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                             figsize=(cell_inches * n_cols + 1.0, cell_inches * n_rows + 0.4))
    for i, strip in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(strip):
                ax.imshow(strip[j], interpolation="nearest")
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), rotation=0, ha="right", va="center", fontsize=8)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(str(col_labels[j]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return _save(fig, path)


def temperature_sweep(grids, path, n_columns=8, title="samples by temperature (Glow Figure 8)"):
    """{T: uint8 [N, H, W, C]} -> one figure, a row per temperature (the first n_columns);
    T a number, or a tuple of one per latent (rows then in the given order)."""
    from tfglow.sampling import temperature_label

    temps = sorted(grids) if all(np.isscalar(t) for t in grids) else list(grids)
    return image_rows([np.asarray(grids[t])[:n_columns] for t in temps], path,
                      row_labels=[f"T={temperature_label(t)}" for t in temps], title=title)
