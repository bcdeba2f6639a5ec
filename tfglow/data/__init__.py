"""tfglow.data: Glow TFRecords (the original release's format) and the input pipeline.

    make_dataset(data_dir, split, resolution, batch_size, *, shard, shuffle, seed, rnd_crop,
                 dal, repeat, ...) -> tf.data.Dataset of (uint8 images, int32 labels[, attr])

Data directories come from `python -m data_prep <dataset> --source PATH --out DIR` or are the
original release's TFRecord folders; `data_dir=None` (or "digits") serves the embedded
scikit-learn digits with no preparation step.
"""
from tfglow.data.augment import augment_batch, effective_dal
from tfglow.data.errors import DataError
from tfglow.data.imageops import box_downsample, quantize
from tfglow.data.manifest import (MANIFEST_NAME, ShardSet, find_shards, load_manifest,
                                  verify_dataset)
from tfglow.data.pipeline import (DIGITS, DIGITS_VAL_COUNT, dataset_info, load_numpy,
                                  make_dataset, steps_per_epoch)
from tfglow.data.records import (parse_example_numpy, parse_shard_name, resolution_tag,
                                 serialize_example, shard_name)

__all__ = [
    "DataError", "make_dataset", "dataset_info", "load_numpy", "steps_per_epoch",
    "effective_dal", "augment_batch", "verify_dataset", "find_shards", "load_manifest",
    "ShardSet", "MANIFEST_NAME", "DIGITS", "DIGITS_VAL_COUNT", "box_downsample", "quantize",
    "serialize_example", "parse_example_numpy", "shard_name", "parse_shard_name",
    "resolution_tag",
]
