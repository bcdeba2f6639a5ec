"""scikit-learn's bundled handwritten digits: tfglow's embedded default data set.

1,797 real 8x8 grayscale digits with 17 intensity levels (0..16), shipped inside
scikit-learn, so training works on a fresh machine with no download.
"""
import numpy as np

#: The digits are stored with 17 levels; this maps them onto 0..255.
DIGITS_MAX_LEVEL = 16


def load_digits_uint8():
    """Returns (images uint8 [1797, 8, 8, 1], labels int64 [1797]).

    Intensities v in 0..16 become round(v * 255 / 16), so 0 -> 0 and 16 -> 255.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    levels = bunch.images.astype(np.float64)
    images = np.round(levels * 255.0 / DIGITS_MAX_LEVEL).astype(np.uint8)
    return images[..., None], bunch.target.astype(np.int64)


#: The last 297 digits are the validation split (1,500 train), as tfglow.data serves them.
DIGITS_VAL_COUNT = 297
