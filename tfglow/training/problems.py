"""The original's `--problem` table, plus `digits`, our embedded default.

image_size, n_test and n_y are the original `train.py` values (`get_data`); `rnd_crop` is its
LSUN RealNVP protocol (96x96 records, random 64x64 crops). `data_prep` is the command that
writes the data set, for the error a missing data set gives.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    image_size: int
    n_y: int
    n_test: int            # -1: per worker count below
    n_test_per_worker: int = 0
    rnd_crop: bool = False
    data_prep: str = ""


PROBLEMS = {p.name: p for p in [
    Problem("cifar10", 32, 10, 10000, data_prep="python -m data_prep cifar10 --source cifar-10-python.tar.gz --out DIR"),
    Problem("mnist", 32, 10, 10000, data_prep="python -m data_prep mnist --source MNIST_IDX_DIR --out DIR"),
    Problem("imagenet-oord", 64, 1000, 50000,
            data_prep="python -m data_prep imagenet_oord --source Imagenet64_train_npz --out DIR --resolution 64"),
    Problem("imagenet", 256, 1000, 50000, data_prep="python -m data_prep images --source IMAGENET_DIR --out DIR --resolution 256"),
    Problem("celeba", 256, 1, 3000, data_prep="python -m data_prep celeba --source CELEBA_HQ_DIR --out DIR --resolution 256 --n_bits_x 5"),
    Problem("lsun_realnvp", 64, 1, -1, n_test_per_worker=300, rnd_crop=True,
            data_prep="python -m data_prep lsun --source LSUN_CATEGORY_LMDB --out DIR --resolution 96"),
    Problem("lsun", 256, 1, -1, n_test_per_worker=300,
            data_prep="python -m data_prep lsun --source LSUN_CATEGORY_LMDB --out DIR --resolution 256"),
    Problem("digits", 8, 10, 297),
]}


def get_problem(name):
    if name not in PROBLEMS:
        raise ValueError(f"--problem {name!r} is not known; choose from {sorted(PROBLEMS)} "
                         "(or any name with --data_dir written by data_prep)")
    return PROBLEMS[name]
