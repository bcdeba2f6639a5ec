"""Image grids for samples: uint8 [N, H, W, C] -> one PNG."""
import math
import os
import tempfile

import numpy as np
from PIL import Image


def image_grid(images, rows=None, pad=1, scale=1):
    """uint8 [N, H, W, C] (C = 1 or 3) -> uint8 [rows*(H+pad)-pad, cols*(W+pad)-pad, C].

    Cells are filled row by row; `scale` repeats pixels (nearest) for small images.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"image_grid: expected uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    rows = rows or int(math.ceil(math.sqrt(n)))
    cols = int(math.ceil(n / rows))
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = img
    return grid


def save_png(path, image):
    """Writes uint8 [H, W, C] (C = 1 or 3) to `path` atomically (temp file + rename)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(image).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
