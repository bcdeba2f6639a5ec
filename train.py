"""Train Glow: `python train.py --problem cifar10 --data_dir DIR ...` (the original's flags).

    python train.py --problem digits --logdir runs/digits          # no data needed
    python train.py --problem cifar10 --data_dir data/cifar10 --n_levels 3 --depth 32 \
        --flow_permutation 2 --flow_coupling 1 --learntop --lr 0.001 --n_bits_x 8
    mpiexec -n 8 python train.py ...       # or horovodrun -np 8: Horovod, detected
    python train.py --restore_path RUN --inference     # x.npy, z.npy as the original

See tfglow/training/hparams.py for every flag and README.md for the outputs. A user mistake
(bad flag value, missing data, a logdir that already holds another run) ends with one line on
stderr and exit status 2 (`--verbose` shows the traceback); nothing in the run directory is changed by a refused command.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from tfglow.data import DataError
    from tfglow.training.hparams import build_parser, resolve
    from tfglow.training.trainer import Trainer, TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        Trainer(resolve(args)).run()
    except TrainingDiverged as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except (ValueError, DataError, FileExistsError, FileNotFoundError, ImportError) as e:
        if args.verbose:  # the traceback, for debugging
            raise
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
