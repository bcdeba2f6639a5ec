"""Level-of-detail grids (the paper's figure 5): an encoded image's coarse latents kept
exactly, the finer ones redrawn.

Row (image i, level L) of `detail_grid` holds the image itself, then n variations that share
its latents z_L .. z_end (HierarchicalFlow.resample_finer: level 0 is the image-resolution
latent, the last the 1x1 one) and redraw z_0 .. z_{L-1}. L runs from 1 (only the finest
details vary) to the number of latents - 1 (only the 1x1 code is kept).
"""
import numpy as np
import tensorflow as tf


def detail_levels(model):
    """The levels L of the grid's rows: 1 .. len(latent_shapes) - 1."""
    return list(range(1, len(model.latent_shapes)))


def detail_grid(model, images, n_variations=4, temperature=0.8, temperatures=None, seed=0):
    """uint8 images [N, H, W, C] -> uint8 [N * n_levels, 1 + n_variations, H, W, C]: per image
    and level (detail_levels), the image then its variations; seeded (variation v, level L
    draw with seed (seed * 1009 + v) * 31 + L), so a grid is reproducible."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) < 1:
        raise ValueError(f"detail_grid: images must be uint8 [N >= 1, H, W, C]; got "
                         f"{images.dtype} {images.shape}")
    n_variations = int(n_variations)
    if n_variations < 1:
        raise ValueError(f"detail_grid: n_variations={n_variations} must be >= 1")
    zs = model.encode(model.bin_centres(tf.convert_to_tensor(images)))
    rows = []
    for level in detail_levels(model):
        cells = [images]
        for v in range(n_variations):
            s = (int(seed) * 1009 + v) * 31 + level
            z = model.resample_finer(zs, level, temperature, temperatures, seed=s)
            cells.append(model.postprocess(model.decode(z)).numpy())
        rows.append(np.stack(cells, 1))                         # [N, 1 + n, H, W, C]
    # image-major: all levels of image 0, then image 1, ...
    return np.stack(rows, 1).reshape(-1, 1 + n_variations, *images.shape[1:])
