"""train.py's flags: the original release's names, meanings and defaults, plus our additions.

Model flags left unset take the original's defaults, except for `--problem digits` (our
CPU-sized default, from the `digits` preset) and when `--preset NAME` names a paper run.
Derived values follow the original `train.py`:

    image_size = problem's (unless --image_size)     n_y = problem's
    local_batch_train = n_batch_train * anchor_size^2 // image_size^2   (per replica)
    local_batch_init  = n_batch_init  * anchor_size^2 // image_size^2
    local_batch_test  = the largest divisor of 50 <= local_batch_train, unless --n_batch_test
                        (the original's table {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1})
    train_its = ceil(n_train / (n_batch_train * world))                   (steps per epoch)
    beta2 = 1 - 1 / (train_its * polyak_epochs)

Resuming (--restore_path, or --restore_if_exists on a logdir with checkpoints): flags that fix
the checkpoint's structure (RUN_FLAGS) and are not given take the run's values from its
hparams.json; given ones must equal the run's, else a ValueError names each that differs.
"""
import argparse
import dataclasses
import json
import math
import os

from tfglow.config import PRESETS, GlowConfig
from tfglow.training.problems import get_problem

#: The original's model flags and defaults (None in the parser = "not given").
MODEL_DEFAULTS = dict(width=512, depth=32, n_levels=3, flow_permutation=2, flow_coupling=0,
                      learntop=False, ycond=False, n_bits_x=8, weight_y=0.0)

#: Our defaults for the embedded problem: a model and batch that train in minutes on a CPU.
PROBLEM_DEFAULTS = {
    "digits": dict(PRESETS["digits"], anchor_size=8, n_train=1500, n_batch_init=256,
                   epochs_warmup=1, epochs_full_valid=1, epochs_full_sample=5),
}


def build_parser():
    p = argparse.ArgumentParser(description="Train Glow (flags as the original openai/glow train.py).")
    a = p.add_argument
    # --- the original's flags, same names and defaults
    a("--verbose", action="store_true", help="Verbose mode")
    a("--restore_path", type=str, default="", help="Checkpoint (or directory) to resume from")
    a("--inference", action="store_true",
      help="As the original: encode the validation images, decode them, write x.npy and z.npy")
    a("--logdir", type=str, default="./logs", help="Location to save logs")
    a("--problem", type=str, default="cifar10", help="Problem (cifar10/mnist/imagenet-oord/imagenet/celeba/lsun_realnvp/lsun/digits)")
    a("--category", type=str, default="", help="LSUN category")
    a("--data_dir", type=str, default="", help="Location of data (written by python -m data_prep)")
    a("--dal", type=int, default=None, help="Data augmentation level: 0=None, 1=Standard, 2=Extra")
    a("--fmap", type=int, default=1, help="# Threads for parallel file reading (unused: tf.data AUTOTUNE)")
    a("--pmap", type=int, default=16, help="# Threads for parallel map (unused: tf.data AUTOTUNE)")
    a("--n_train", type=int, default=None, help="Train epoch size (default 50000)")
    a("--n_test", type=int, default=-1, help="Valid epoch size (-1: the whole validation split)")
    a("--n_batch_train", type=int, default=64, help="Minibatch size")
    a("--n_batch_test", type=int, default=None,
      help="Validation minibatch per replica (default: the original's table from the train batch)")
    a("--n_batch_init", type=int, default=None, help="Minibatch size for data-dependent init (default 256)")
    a("--optimizer", type=str, default=None, help="adam or adamax (default adamax)")
    a("--lr", type=float, default=0.001, help="Base learning rate")
    a("--beta1", type=float, default=0.9, help="Adam beta1")
    a("--polyak_epochs", type=float, default=1, help="Nr of averaging epochs for Polyak and beta2")
    a("--weight_decay", type=float, default=1.0, help="Weight decay. Switched off by default.")
    a("--epochs", type=int, default=1000000, help="Total number of training epochs")
    a("--epochs_warmup", type=int, default=None, help="Warmup epochs (default 10)")
    a("--epochs_full_valid", type=int, default=None, help="Epochs between valid (default 50)")
    a("--gradient_checkpointing", type=int, default=1,
      help="0 plain backprop, 1 recompute each flow step (the original), 2 reversible")
    a("--image_size", type=int, default=-1, help="Image size")
    a("--anchor_size", type=int, default=None, help="Anchor size for deciding batch size (default 32)")
    a("--width", type=int, default=None, help="Width of hidden layers (default 512)")
    a("--depth", type=int, default=None, help="Depth of network (default 32)")
    a("--weight_y", type=float, default=None, help="Weight of log p(y|x) in weighted loss")
    a("--n_bits_x", type=int, default=None, help="Number of bits of x (default 8)")
    a("--n_levels", "--n_level", type=int, default=None, help="Number of levels (default 3)")
    a("--n_sample", type=int, default=1, help="minibatch size for sample")
    a("--epochs_full_sample", type=int, default=None, help="Epochs between full scale sample (default 50)")
    a("--learntop", action=argparse.BooleanOptionalAction, default=None, help="Learn spatial prior")
    a("--ycond", action=argparse.BooleanOptionalAction, default=None, help="Use y conditioning")
    a("--seed", type=int, default=0, help="Random seed")
    a("--flow_permutation", type=int, default=None,
      help="Type of flow. 0=reverse (realnvp), 1=shuffle, 2=invconv (ours), 3=LU invconv")
    a("--flow_coupling", type=int, default=None, help="Coupling type: 0=additive, 1=affine")
    # --- tfglow's additions
    a("--preset", type=str, default=None, help=f"Take unset model flags from a paper run: {sorted(PRESETS)}")
    a("--distribute", choices=["auto", "none", "mirrored", "multiworker", "horovod"], default="auto",
      help="auto: mirrored over all GPUs if >1, multiworker if TF_CONFIG is set, else none")
    a("--xla", action="store_true", help="Compile the train step with XLA")
    a("--precision", choices=["float32", "mixed_bfloat16"], default="float32",
      help="Compute dtype of the coupling networks while training (evaluation is float32)")
    a("--no_polyak", action="store_const", const=True, default=None,
      help="Validate, sample and export with the raw weights")
    a("--validate_only", action="store_true", help="Only restore and run a full validation")
    a("--ckpt_every", type=int, default=500, help="Checkpoint every N steps (and every epoch)")
    a("--max_steps", type=int, default=0, help="Stop after this many steps in total (0: no limit)")
    a("--restore_if_exists", action="store_true",
      help="Resume from --logdir's latest checkpoint if it has one (else start fresh)")
    a("--deterministic", action="store_true", help="Deterministic ops (exact resume on CPU)")
    a("--no_progress", action="store_true", help="No progress bar")
    return p


@dataclasses.dataclass
class TrainConfig:
    """All flags, resolved. Field names are the flag names."""
    verbose: bool
    restore_path: str
    inference: bool
    logdir: str
    problem: str
    category: str
    data_dir: str
    dal: int
    fmap: int
    pmap: int
    n_train: int
    n_test: int
    n_batch_train: int
    n_batch_test: int
    n_batch_init: int
    optimizer: str
    lr: float
    beta1: float
    polyak_epochs: float
    weight_decay: float
    epochs: int
    epochs_warmup: int
    epochs_full_valid: int
    gradient_checkpointing: int
    image_size: int
    anchor_size: int
    width: int
    depth: int
    weight_y: float
    n_bits_x: int
    n_levels: int
    n_sample: int
    epochs_full_sample: int
    learntop: bool
    ycond: bool
    seed: int
    flow_permutation: int
    flow_coupling: int
    preset: str
    distribute: str
    xla: bool
    precision: str
    no_polyak: bool
    validate_only: bool
    ckpt_every: int
    max_steps: int
    restore_if_exists: bool
    deterministic: bool
    no_progress: bool
    # derived
    n_y: int = 10
    n_channels: int = 3
    rnd_crop: bool = False

    def model_config(self):
        return GlowConfig(image_size=self.image_size, n_levels=self.n_levels, depth=self.depth,
                          width=self.width, flow_permutation=self.flow_permutation,
                          flow_coupling=self.flow_coupling, learntop=self.learntop,
                          ycond=self.ycond, n_y=self.n_y, n_bits_x=self.n_bits_x,
                          weight_y=self.weight_y, n_channels=self.n_channels, seed=self.seed)

    def local_batch(self, n):
        """The original's anchor scaling: n * anchor_size^2 // image_size^2 (at least 1)."""
        return max(1, n * self.anchor_size ** 2 // self.image_size ** 2)

    @property
    def local_batch_train(self):
        return self.local_batch(self.n_batch_train)

    @property
    def local_batch_init(self):
        return self.local_batch(self.n_batch_init)

    @property
    def local_batch_test(self):
        """--n_batch_test if given, else the original's divisor of 50 (see the module doc)."""
        return self.n_batch_test or original_test_batch(self.local_batch_train)

    def train_its(self, world_size):
        return int(math.ceil(self.n_train / (self.n_batch_train * world_size)))

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


_GENERAL_DEFAULTS = dict(n_train=50000, n_batch_init=256, epochs_warmup=10, epochs_full_valid=50,
                         anchor_size=32, epochs_full_sample=50, dal=1, optimizer="adamax",
                         no_polyak=False)

#: Flags a checkpoint's structure depends on: taken from the run when resuming.
RUN_FLAGS = tuple(MODEL_DEFAULTS) + ("image_size", "optimizer", "no_polyak")


def original_test_batch(local_batch_train):
    """The original's validation batch: the largest divisor of 50 not above the train batch.

    Its train.py looks this up in {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1} ("round
    down to closest divisor of 50"); the rule gives those values and extends to other sizes.
    """
    return max(d for d in (1, 2, 5, 10, 25, 50) if d <= max(1, local_batch_train))


def resolve(args):
    """argparse Namespace -> TrainConfig, filling unset flags as documented above."""
    values = vars(args).copy()
    run = run_hparams(values)
    if run is not None:
        _take_run_flags(values, run[1])
    problem_defaults = dict(PROBLEM_DEFAULTS.get(values["problem"], {}))
    preset = {}
    if values["preset"]:
        if values["preset"] not in PRESETS:
            raise ValueError(f"--preset {values['preset']!r} is not known; choose from {sorted(PRESETS)}")
        preset = PRESETS[values["preset"]]
    for name in list(MODEL_DEFAULTS) + list(_GENERAL_DEFAULTS):
        if values.get(name) is None:
            for source in (preset, problem_defaults, MODEL_DEFAULTS, _GENERAL_DEFAULTS):
                if name in source:
                    values[name] = source[name]
                    break
    problem = _problem_or_none(values["problem"])
    n_channels = problem_defaults.get("n_channels", preset.get("n_channels", 3))
    if values["problem"] == "digits" and values["data_dir"] == "":
        values["data_dir"] = "digits"
    if values["data_dir"] == "" and problem and problem.original_data_dir:
        values["data_dir"] = problem.original_data_dir  # the original's default location
    if values["category"]:
        values["data_dir"] = os.path.join(values["data_dir"], values["category"])
    n_y = problem.n_y if problem else 1
    if problem:
        image_size = problem.image_size
    else:  # any data_prep directory: sizes, channels and classes from its manifest
        image_size = preset.get("image_size", -1)
        manifest = _manifest_or_none(values["data_dir"])
        if manifest:
            image_size = max(manifest.get("resolutions") or [image_size])
            n_channels = int(manifest.get("channels") or n_channels)
            n_y = int(manifest.get("num_classes") or 1)
    if values["image_size"] == -1:
        values["image_size"] = image_size
    cfg = TrainConfig(**values, n_y=n_y, n_channels=n_channels,
                      rnd_crop=bool(problem and problem.rnd_crop))
    _check(cfg)
    if run is not None:
        check_resume(cfg, *run)
    return cfg


def resume_dir(values):
    """The run directory a resolved set of flags resumes from, or None for a fresh run."""
    from tfglow.training.checkpoints import logdir_of, resolve_checkpoint

    if values["restore_path"]:
        try:
            return logdir_of(resolve_checkpoint(values["restore_path"]))
        except FileNotFoundError as e:
            raise ValueError(f"--restore_path: {e}") from None
    if values["restore_if_exists"]:
        import tensorflow as tf
        if tf.train.latest_checkpoint(os.path.join(values["logdir"], "checkpoints")):
            return values["logdir"]
    return None


def run_hparams(values):
    """(run directory, its hparams dict) of the run being resumed; None for a fresh run or a
    run without hparams.json."""
    from tfglow.training.checkpoints import HPARAMS, read_hparams

    run_dir = resume_dir(values)
    if not run_dir or not os.path.exists(os.path.join(run_dir, HPARAMS)):
        return None
    return run_dir, read_hparams(run_dir)


def _take_run_flags(values, run):
    """Unset structural flags take the run's values (-1 is image_size's "unset")."""
    for name in RUN_FLAGS:
        if values.get(name) in (None, -1) and run.get(name) is not None:
            values[name] = run[name]


def check_resume(cfg, run_dir, run):
    """ValueError naming every structural flag whose value differs from the resumed run's."""
    given = dataclasses.asdict(cfg)
    diffs = []
    for name in RUN_FLAGS + ("n_y", "n_channels"):
        if name in run and _differs(run[name], given[name]):
            diffs.append(f"--{name}: run {run[name]!r}, given {given[name]!r}")
    if diffs:
        raise ValueError(f"cannot resume {run_dir}: flags differ from the "
                         f"run's ({'; '.join(diffs)}); drop them to take the run's values, or use "
                         "another --logdir for a new run")


def _differs(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) != float(b)
    return a != b


def _manifest_or_none(data_dir):
    if not data_dir or not os.path.exists(os.path.join(data_dir, "dataset.json")):
        return None
    from tfglow.data import load_manifest
    return load_manifest(data_dir)


def _problem_or_none(name):
    try:
        return get_problem(name)
    except ValueError:
        return None


def _check(cfg):
    for name in ("n_train", "n_batch_train", "n_batch_init", "epochs", "anchor_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name}={getattr(cfg, name)} must be >= 1")
    for name in ("n_batch_test",):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"--{name}={getattr(cfg, name)} must be >= 1")
    if cfg.image_size < 1:
        raise ValueError(f"--image_size is unknown for --problem {cfg.problem!r}: pass --image_size")
    if cfg.dal not in (0, 1, 2):
        raise ValueError(f"--dal={cfg.dal} must be 0, 1 or 2")
    if cfg.gradient_checkpointing not in (0, 1, 2):
        raise ValueError(f"--gradient_checkpointing={cfg.gradient_checkpointing} must be 0, 1 or 2")
    if cfg.optimizer not in ("adam", "adamax"):
        raise ValueError(f"--optimizer={cfg.optimizer!r} must be adam or adamax")
    if cfg.inference and cfg.validate_only:
        raise ValueError("--inference and --validate_only are separate modes: give one")
    cfg.model_config()  # validates the model flags, naming the field
