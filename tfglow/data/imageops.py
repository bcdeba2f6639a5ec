"""Pixel operations shared by the converters and the embedded digits set (numpy, exact)."""
import numpy as np

from tfglow.data.errors import DataError
from tfglow.data.records import is_power_of_two


def box_downsample(image, size, origin=None):
    """uint8 [H, W, C] -> uint8 [size, size, C] by repeated 2x2 box averaging, as the original.

    The original kept the float image across levels and floored each level to uint8, which is
    floor(mean of the (H/size)^2 block of the source); computed here in integers, so exactly.
    Needs a square image whose side is `size` times a power of two.
    """
    h, w = image.shape[:2]
    if h != w:
        raise DataError(origin, f"image is {h}x{w}, not square; cannot box-downsample it to {size}")
    if h % size or not is_power_of_two(h // size):
        raise DataError(origin, f"image is {h}x{w}; {size} is not {h} divided by a power of two")
    k = h // size
    if k == 1:
        return image
    blocks = image.reshape(size, k, size, k, image.shape[2]).astype(np.int64)
    return (blocks.sum(axis=(1, 3)) // (k * k)).astype(np.uint8)


def quantize(image, n_bits_x):
    """Stored value for an n_bits_x-bit data set: floor(x / 2**(8 - n_bits_x))."""
    if n_bits_x not in (5, 8) and not 1 <= n_bits_x <= 8:
        raise DataError(None, f"n_bits_x must be in 1..8, got {n_bits_x}")
    return image if n_bits_x == 8 else (image >> (8 - n_bits_x)).astype(np.uint8)
