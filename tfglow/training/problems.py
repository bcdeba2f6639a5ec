"""The original's `--problem` table, plus `digits`, our embedded default.

image_size, n_test and n_y are the original `train.py` values (`get_data`); `rnd_crop` is its
LSUN RealNVP protocol (96x96 records, random 64x64 crops). `data_prep` is the command that
writes the data set, for the error a missing data set gives. `original_data_dir` is the
original's default `--data_dir` (its `get_data`), so its README command lines find data put in
the same place; cifar10 and mnist had none (the original downloaded them with Keras).
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
    original_data_dir: str = ""


PROBLEMS = {p.name: p for p in [
    Problem("cifar10", 32, 10, 10000, data_prep="python -m data_prep cifar10 --source cifar-10-python.tar.gz --out DIR"),
    Problem("mnist", 32, 10, 10000, data_prep="python -m data_prep mnist --source MNIST_IDX_DIR --out DIR"),
    Problem("imagenet-oord", 64, 1000, 50000,
            data_prep="python -m data_prep imagenet_oord --source Imagenet64_train_npz --out DIR",
            original_data_dir="/mnt/host/imagenet-oord-tfr"),
    Problem("imagenet", 256, 1000, 50000,
            data_prep="python -m data_prep images --source IMAGENET_DIR --out DIR --resolution 256",
            original_data_dir="/mnt/host/imagenet-tfr"),
    Problem("celeba", 256, 1, 3000,
            data_prep="python -m data_prep celeba --source CELEBA_HQ_DIR --out DIR --resolution 256 --n_bits_x 5",
            original_data_dir="/mnt/host/celeba-reshard-tfr"),
    Problem("lsun_realnvp", 64, 1, -1, n_test_per_worker=300, rnd_crop=True,
            data_prep="python -m data_prep lsun --source LSUN_CATEGORY_LMDB --out DIR/CATEGORY --realnvp",
            original_data_dir="/mnt/host/lsun_realnvp"),
    Problem("lsun", 256, 1, -1, n_test_per_worker=300,
            data_prep="python -m data_prep lsun --source LSUN_CATEGORY_LMDB --out DIR/CATEGORY --resolution 256",
            original_data_dir="/mnt/host/lsun"),
    Problem("digits", 8, 10, 297),
]}


def get_problem(name):
    if name not in PROBLEMS:
        raise ValueError(f"--problem {name!r} is not known; choose from {sorted(PROBLEMS)} "
                         "(or any name with --data_dir written by data_prep)")
    return PROBLEMS[name]
