"""Pixel operations shared by the converters, the embedded digits set, evaluate.py and the demo:
decoding, centre crops, resizing, box downsampling, quantisation (numpy, exact)."""
import io

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

def to_array(image, origin, channels):
    """A PIL image -> uint8 [H, W, channels] (RGB, or L for one channel)."""
    arr = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]

def load_image(src, origin, channels=3):
    """Decodes an image file path or bytes with PIL; a corrupt or truncated image is a
    DataError naming `origin`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.load()
            return to_array(im, origin, channels)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        raise DataError(origin, f"corrupt, truncated or unsupported image ({type(e).__name__}: "
                                f"{e})") from None

def centre_crop(image):
    """The central square of an [H, W, C] image (the original's LSUN rule)."""
    h, w = image.shape[:2]
    s = min(h, w)
    return image[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]

def crop_resize(image, size, origin):
    """Centre crop, then PIL's antialiasing (Lanczos) resize to size x size, as the original's
    LSUN converter (`Image.ANTIALIAS`)."""
    from PIL import Image

    square = centre_crop(image)
    if square.shape[0] < size:
        raise DataError(origin, f"image is {image.shape[0]}x{image.shape[1]}, smaller than "
                                f"{size}x{size}")
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    mode = "RGB" if image.shape[2] == 3 else "L"
    im = Image.fromarray(square if mode == "RGB" else square[..., 0], mode)
    out = np.asarray(im.resize((size, size), Image.LANCZOS), dtype=np.uint8)
    return out if out.ndim == 3 else out[..., None]
