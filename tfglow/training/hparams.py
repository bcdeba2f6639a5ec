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

Other model families (`--model flowpp`, tfglow.family): the model is the family's config from
`--preset` (e.g. flowpp_cifar10; a family's preset also selects it), else the problem's
CPU-sized preset (digits), else the config's defaults, with image_size and n_channels of the
data and `--model_set KEY=VALUE ...` overrides; it is stored resolved as `family_config`.
Glow's model flags (--depth, --width, ...) do not apply. Unset training flags take the
family's defaults (Flow++: tfglow.family.FLOWPP_TRAINING, the official optimizer), then
FAMILY_PROBLEM_DEFAULTS, then the general ones. For Glow every flag resolves as before.
The hierarchical family takes tfglow.family.HIERARCHICAL_TRAINING (hflow's optimizer, groups,
accumulation, EMA) and serves digits padded to 16x16 (preset hierarchical_digits16).
"""
import argparse
import dataclasses
import json
import math
import os

from tfglow.config import PRESETS, GlowConfig
from tfglow.family import FAMILIES, family_of_preset, get_family
from tfglow.training.problems import get_problem

#: The original's model flags and defaults (None in the parser = "not given").
MODEL_DEFAULTS = dict(width=512, depth=32, n_levels=3, flow_permutation=2, flow_coupling=0,
                      learntop=False, ycond=False, n_bits_x=8, weight_y=0.0)

#: Our defaults for the embedded problem: a model and batch that train in minutes on a CPU.
PROBLEM_DEFAULTS = {
    "digits": dict(PRESETS["digits"], anchor_size=8, n_train=1500, n_batch_init=256,
                   epochs_warmup=1, epochs_full_valid=1, epochs_full_sample=5),
}

#: Per (family, problem): training defaults of the CPU-sized runs. Flow++ on digits runs a
#: few hundred steps, so a short warmup, a larger lr and an EMA horizon of ~100 steps (0.999
#: would still hold 60% of the initial weights after 500 steps).
FAMILY_PROBLEM_DEFAULTS = {
    # hflow's training as is, on 1500 digit images per epoch (94 steps of 16).
    ("hierarchical", "digits"): dict(n_train=1500, epochs_full_sample=5),
    ("flowpp", "digits"): dict(anchor_size=8, n_train=1500, lr=1e-3, warmup_steps=50,
                               ema_decay=0.99, epochs_full_sample=5),
}


def number(text):
    """An int if integral ("2" -> 2), else a float ("0.5"): fractional epochs keep ints."""
    value = float(text)
    return int(value) if value.is_integer() else value


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
    a("--n_batch_train", type=int, default=None,
      help="Minibatch size (default 64; hierarchical 16 = 4 micro-batches of 4)")
    a("--n_batch_test", type=int, default=None,
      help="Validation minibatch per replica (default: the original's table from the train batch)")
    a("--n_batch_init", type=int, default=None, help="Minibatch size for data-dependent init (default 256)")
    a("--optimizer", type=str, default=None, help="adam or adamax (default adamax)")
    a("--lr", type=float, default=None, help="Base learning rate (default 0.001; Flow++ 3e-4)")
    a("--beta1", type=float, default=0.9, help="Adam beta1")
    a("--polyak_epochs", type=float, default=1, help="Nr of averaging epochs for Polyak and beta2")
    a("--weight_decay", type=float, default=1.0, help="Weight decay. Switched off by default.")
    a("--epochs", type=int, default=1000000, help="Total number of training epochs")
    a("--epochs_warmup", type=number, default=None,
      help="Warmup epochs, may be fractional (default 10; Flow++ 0: --warmup_steps)")
    a("--epochs_full_valid", type=int, default=None, help="Epochs between valid (default 50)")
    a("--gradient_checkpointing", type=int, default=None,
      help="0 plain backprop, 1 recompute each flow step (the original; Flow++ and "
           "hierarchical default 0; hierarchical: also its encoders and decoders), "
           "2 reversible (Glow only)")
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
    a("--model", choices=sorted(FAMILIES), default=None,
      help="Model family (default glow, or the family of --preset)")
    a("--preset", type=str, default=None,
      help="Take unset model flags from a paper run: "
           f"{sorted(k for f in FAMILIES.values() for k in f.presets)}")
    a("--model_set", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
      help="Fields of a non-Glow model's config, e.g. --model_set filters=48 blocks=4 "
           "(repeatable; a later KEY wins)")
    a("--warmup_steps", type=int, default=None,
      help="Linear warmup over this many steps (replaces --epochs_warmup; Flow++ 2000)")
    a("--grad_clip", type=float, default=None,
      help="Clip the replica-averaged gradients at this global norm (0 = off; Flow++ 1.0)")
    a("--beta2", type=float, default=None,
      help="Adam/Adamax beta2 (default the original's 1 - 1/(train_its * polyak_epochs))")
    a("--ema_decay", type=float, default=None,
      help="Decay of the weight average used for validation (default beta2; Flow++ 0.999)")
    a("--grad_accum", type=int, default=None,
      help="Split each replica's batch into this many micro-batches and average their "
           "gradients (default 1; hierarchical 4)")
    a("--ema_copy_epochs", type=int, default=None,
      help="The weight average copies the weights for this many epochs (default 0; "
           "hierarchical 1)")
    a("--freeze_encoder_epoch", type=int, default=None,
      help="Hierarchical: the encoders' learning rate is 0 from this 0-based epoch on "
           "(default 60 as hflow; -1 never)")
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
    model: str
    model_set: list
    warmup_steps: int
    grad_clip: float
    beta2: float
    ema_decay: float
    grad_accum: int
    ema_copy_epochs: int
    freeze_encoder_epoch: int
    # derived
    n_y: int = 10
    n_channels: int = 3
    rnd_crop: bool = False
    family_config: dict = None   # a non-Glow family's resolved config (its to_dict())

    def model_config(self):
        if self.model != "glow":
            return get_family(self.model).config_class.from_dict(self.family_config)
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
                         no_polyak=False, lr=0.001, gradient_checkpointing=1, warmup_steps=0,
                         grad_clip=0.0, n_batch_train=64, grad_accum=1, ema_copy_epochs=0)

#: Flags a checkpoint's structure depends on: taken from the run when resuming.
RUN_FLAGS = tuple(MODEL_DEFAULTS) + ("image_size", "optimizer", "no_polyak", "model")


def original_test_batch(local_batch_train):
    """The original's validation batch: the largest divisor of 50 not above the train batch.

    Its train.py looks this up in {64: 50, 32: 25, 16: 10, 8: 5, 4: 2, 2: 2, 1: 1} ("round
    down to closest divisor of 50"); the rule gives those values and extends to other sizes.
    """
    return max(d for d in (1, 2, 5, 10, 25, 50) if d <= max(1, local_batch_train))


def resolve(args):
    """argparse Namespace -> TrainConfig, filling unset flags as documented above."""
    values = vars(args).copy()
    glow_flags_given = [n for n in MODEL_DEFAULTS if values.get(n) is not None]
    run = run_hparams(values)
    if run is not None:
        _take_run_flags(values, run[1])
    family = _family(values)
    values["model"] = family.name
    problem_defaults = dict(PROBLEM_DEFAULTS.get(values["problem"], {}))
    preset = family.presets[values["preset"]] if values["preset"] else {}
    if family.name == "glow":
        sources = (preset, problem_defaults, MODEL_DEFAULTS, _GENERAL_DEFAULTS)
        names = list(MODEL_DEFAULTS) + list(_GENERAL_DEFAULTS)
        if values["model_set"]:
            raise ValueError("--model_set is for other model families (--model); Glow's model "
                             "flags are --depth, --width, ...")
    else:
        if glow_flags_given:
            raise ValueError(f"--{glow_flags_given[0]} is a Glow flag; --model {family.name} "
                             "takes its model from --preset and --model_set KEY=VALUE")
        # Glow's model flags do not apply; what they say is fixed for these families.
        values.update(dict.fromkeys(MODEL_DEFAULTS), ycond=False, n_bits_x=8, weight_y=0.0)
        if not values["preset"]:
            preset = family.presets.get(family.problem_presets.get(values["problem"]), {})
        sources = (FAMILY_PROBLEM_DEFAULTS.get((family.name, values["problem"]), {}),
                   family.train_defaults, _GENERAL_DEFAULTS)
        names = sorted({k for source in sources for k in source})
    for name in names:
        if values.get(name) is None:
            for source in sources:
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
        if values["problem"] == "digits" and family.pad_digits:
            image_size = preset.get("image_size", image_size)  # zero-padded (tfglow.data)
    else:  # any data_prep directory: sizes, channels and classes from its manifest
        image_size = preset.get("image_size", -1)
        manifest = _manifest_or_none(values["data_dir"])
        if manifest:
            image_size = max(manifest.get("resolutions") or [image_size])
            n_channels = int(manifest.get("channels") or n_channels)
            n_y = int(manifest.get("num_classes") or 1)
    if values["image_size"] == -1:
        values["image_size"] = image_size
    if values["anchor_size"] is None:  # a family default: no anchor scaling (hierarchical)
        values["anchor_size"] = values["image_size"]
    family_config = None
    if family.name != "glow":
        family_config = _family_config(family, preset, values, n_channels, run)
    cfg = TrainConfig(**values, n_y=n_y, n_channels=n_channels,
                      rnd_crop=bool(problem and problem.rnd_crop), family_config=family_config)
    _check(cfg)
    if run is not None:
        check_resume(cfg, *run)
    return cfg


def _family(values):
    """The model family of --model, else of --preset, else Glow; a ValueError if they differ."""
    preset = values["preset"]
    owner = family_of_preset(preset) if preset else None
    if preset and owner is None:
        known = sorted(k for f in FAMILIES.values() for k in f.presets)
        raise ValueError(f"--preset {preset!r} is not known; choose from {known}")
    name = values["model"] or (owner.name if owner else "glow")
    family = get_family(name)
    if owner is not None and owner is not family:
        raise ValueError(f"--preset {preset!r} is a {owner.name} preset, not one of --model "
                         f"{name}: drop --model or choose from {sorted(family.presets)}")
    return family


def _family_config(family, preset, values, n_channels, run):
    """The family's config as a dict: preset, the data's image_size and n_channels, the seed,
    then --model_set; on resume without --preset / --model_set, the run's."""
    if run is not None and run[1].get("family_config") and not values["preset"] \
            and not values["model_set"]:
        return run[1]["family_config"]
    cls = family.config_class
    fields = {**preset, "image_size": values["image_size"], "n_channels": n_channels,
              "seed": values["seed"]}
    fields.update(parse_model_set(cls, values["model_set"] or []))
    try:
        return cls(**fields).to_dict()
    except (ValueError, TypeError) as e:
        raise ValueError(f"--model {family.name} config: {e}") from None


def parse_model_set(cls, items):
    """["filters=48", "attention=false", "stages=column:2,squeeze"] -> typed fields of the
    dataclass `cls` (types from its defaults; tuples are comma-separated, their elements typed
    as the default's first)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or key not in fields:
            raise ValueError(f"--model_set {item!r}: expected KEY=VALUE with KEY one of "
                             f"{sorted(fields)}")
        kind = type(fields[key].default)
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1")
            elif kind is tuple:
                default = fields[key].default
                element = type(default[0]) if default else str  # e.g. hierarchical num_layers
                value = tuple(element(v) for v in text.split(",") if v)
            else:
                value = kind(text)
        except ValueError:
            raise ValueError(f"--model_set {item!r}: {key} takes a {kind.__name__}") from None
        out[key] = value
    return out


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
    ran, now = run.get("family_config") or {}, given["family_config"] or {}
    for name in sorted(set(ran) | set(now)):
        if ran and now and _differs(ran.get(name), now.get(name)):
            diffs.append(f"{given['model']} {name}: run {ran.get(name)!r}, given {now.get(name)!r}")
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
    if cfg.model != "glow":
        if cfg.gradient_checkpointing not in (0, 1):
            raise ValueError(f"--gradient_checkpointing={cfg.gradient_checkpointing}: --model "
                             f"{cfg.model} recomputes each step (1) or not (0)")
        if cfg.precision != "float32":
            raise ValueError(f"--precision {cfg.precision}: --model {cfg.model} trains in float32")
    if cfg.grad_accum < 1:
        raise ValueError(f"--grad_accum={cfg.grad_accum} must be >= 1")
    if cfg.local_batch_train % cfg.grad_accum:
        raise ValueError(f"--grad_accum={cfg.grad_accum} must divide the per-replica batch "
                         f"{cfg.local_batch_train} (--n_batch_train)")
    if cfg.model == "hierarchical" and cfg.local_batch_train // cfg.grad_accum < 2:
        raise ValueError(f"--grad_accum={cfg.grad_accum}: the hierarchical model's noise scale "
                         "is a minibatch statistic; each micro-batch needs >= 2 images "
                         f"(per-replica batch {cfg.local_batch_train})")
    if cfg.freeze_encoder_epoch is not None and cfg.model != "hierarchical":
        raise ValueError(f"--freeze_encoder_epoch is for --model hierarchical, not {cfg.model}")
    if cfg.ema_copy_epochs < 0:
        raise ValueError(f"--ema_copy_epochs={cfg.ema_copy_epochs} must be >= 0")
    for name in ("warmup_steps", "grad_clip"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name}={getattr(cfg, name)} must be >= 0")
    if cfg.epochs_warmup < 0:
        raise ValueError(f"--epochs_warmup={cfg.epochs_warmup} must be >= 0")
    for name in ("beta2", "ema_decay"):
        if getattr(cfg, name) is not None and not 0.0 < getattr(cfg, name) < 1.0:
            raise ValueError(f"--{name}={getattr(cfg, name)} must be in (0, 1)")
    if cfg.inference and cfg.validate_only:
        raise ValueError("--inference and --validate_only are separate modes: give one")
    cfg.model_config()  # validates the model flags, naming the field
