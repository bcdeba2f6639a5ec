"""A tiny exported Glow for the demo tests (tests/test_demo*.py), built once per session."""
import os

import numpy as np

_CACHE = {}

#: Small enough to build, export and serve in seconds: digits 8x8x1, 2 levels, depth 1.
TINY = dict(image_size=8, n_channels=1, n_levels=2, depth=1, width=8, flow_permutation=2,
            flow_coupling=1, learntop=True, n_y=10)


def tiny_export(root, ycond=False):
    """(export dir, Glow model) of a trained-like tiny digits model exported under `root`;
    the same pair for the same root and ycond within one test session. ycond=True gives a
    class-conditional RGB model (digits tiled to 3 channels), so both image kinds are served."""
    import tfglow
    from conftest import perturb
    from tfglow.data import load_numpy
    from tfglow.export import export_saved_model

    path = os.path.join(str(root), "tiny_rgb_ycond" if ycond else "tiny")
    if path not in _CACHE:
        cfg = tfglow.GlowConfig(**{**TINY, **(dict(ycond=True, n_channels=3, flow_coupling=0)
                                               if ycond else {})})
        images, labels = load_numpy("digits", "train", 8)[:2]
        if ycond:
            images = np.repeat(images, 3, axis=-1)
        model = tfglow.Glow(cfg)
        model.initialize(images[:128], labels[:128])
        perturb(model, np.random.default_rng(7))
        export_saved_model(model, path)
        _CACHE[path] = (path, model)
    return _CACHE[path]


def png(array):
    """uint8 [H, W, C] -> PNG bytes."""
    from tfglow.demo.uploads import png_bytes

    return png_bytes(array)


def photo(h, w, seed=0, channels=3):
    """A smooth random uint8 image [h, w, channels] (something like a photo, any size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = [np.sin(6 * xx * rng.uniform(0.5, 2) + rng.uniform(0, 6)) +
            np.cos(5 * yy * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(channels)]
    return np.clip(np.stack(base, -1) * 60 + 128 + rng.normal(0, 8, (h, w, channels)),
                   0, 255).astype(np.uint8)
