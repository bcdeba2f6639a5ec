"""Train Glow: `python train.py --problem cifar10 --data_dir DIR ...` (the original's flags).

    python train.py --problem digits --logdir runs/digits          # no data needed
    python train.py --problem cifar10 --data_dir data/cifar10 --n_levels 3 --depth 32 \
        --flow_permutation 2 --flow_coupling 1 --learntop --lr 0.001 --n_bits_x 8
    horovodrun -np 8 python train.py --distribute horovod ...

See tfglow/training/hparams.py for every flag and README.md for the outputs.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from tfglow.training.hparams import build_parser, resolve
    from tfglow.training.trainer import Trainer, TrainingDiverged

    try:
        hps = resolve(build_parser().parse_args(argv))
    except ValueError as e:
        sys.exit(f"train.py: {e}")
    try:
        Trainer(hps).run()
    except TrainingDiverged as e:
        sys.exit(f"train.py: {e}")


if __name__ == "__main__":
    main()
