"""scikit-learn's bundled handwritten digits: tfglow's embedded default data set.

1,797 real 8x8 grayscale digits with 17 intensity levels (0..16), shipped inside
scikit-learn, so training works on a fresh machine with no download.
"""
from tfglow.data.digits import DIGITS_MAX_LEVEL, DIGITS_VAL_COUNT, load_digits_uint8  # noqa: F401


def open_source(opts):
    """data_prep converter: the digits as a DatasetSource (8x8x1, labels 0..9), no --source."""
    from data_prep.source import DatasetSource, array_split, seeded_order, split_counts

    images, labels = load_digits_uint8()
    n = len(images)
    if opts.val_fraction is None:
        n_train = n - DIGITS_VAL_COUNT
    else:
        n_train, _ = split_counts(n, opts.val_fraction, "sklearn digits")
    splits = {"train": array_split(images[:n_train], labels[:n_train], "sklearn-digits:train",
                                   seeded_order(n_train, opts.seed))}
    if n_train < n:
        splits["validation"] = array_split(images[n_train:], labels[n_train:],
                                           "sklearn-digits:validation")
    return DatasetSource("digits", "sklearn.datasets.load_digits", splits, channels=1,
                         num_classes=10, label_names=[str(i) for i in range(10)],
                         image_shape=(8, 8, 1))
