"""What a training run leaves in --logdir, and how to load a trained model from it.

    <logdir>/hparams.json            the resolved flags (TrainConfig) incl. the model config
    <logdir>/checkpoints/ckpt-N.*    tf.train.CheckpointManager, every --ckpt_every steps
    <logdir>/best/ckpt-N.*           the checkpoint with the best validation loss so far

A checkpoint holds `model`, `optimizer` (moments and the Polyak averages), `step`, `epoch`,
`best_test` and the training data iterator `data`. TF writes the data files first and then
replaces the small `checkpoint` index file atomically, so a run killed while saving still
points at the previous complete checkpoint.
"""
import json
import os

import tensorflow as tf

from tfglow.config import GlowConfig
from tfglow.family import get_family

HPARAMS = "hparams.json"


def write_hparams(logdir, hparams):
    """Writes the resolved flags (a dict) to <logdir>/hparams.json atomically."""
    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, HPARAMS)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(hparams, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_hparams(logdir):
    path = os.path.join(logdir, HPARAMS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {logdir!r} a train.py --logdir?")
    with open(path) as f:
        return json.load(f)


def model_config_from_hparams(hparams):
    """The model config of a run: Glow's from its flags, another family's (hparams "model")
    from its resolved "family_config"."""
    family = hparams.get("model", "glow")
    if family != "glow":
        return get_family(family).config_class.from_dict(hparams["family_config"])
    names = GlowConfig.__dataclass_fields__
    return GlowConfig(**{k: hparams[k] for k in names if k in hparams})


def resolve_checkpoint(path):
    """A checkpoint prefix from a prefix, a checkpoints/ dir or a logdir (latest)."""
    if os.path.isdir(path):
        for sub in ("", "checkpoints", "best"):
            latest = tf.train.latest_checkpoint(os.path.join(path, sub))
            if latest:
                return latest
        raise FileNotFoundError(f"no checkpoint in {path!r} (looked in ./, checkpoints/, best/)")
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"{path!r} is not a checkpoint (no {path}.index)")
    return path


def logdir_of(checkpoint):
    """The run directory of a checkpoint prefix (parent of checkpoints/ or best/)."""
    d = os.path.dirname(os.path.abspath(checkpoint))
    return os.path.dirname(d) if os.path.basename(d) in ("checkpoints", "best") else d


def load_trained(path, use_polyak=True):
    """(model, hparams dict) from a logdir or checkpoint; Polyak-averaged (Flow++: EMA)
    weights by default. Any model family (hparams "model")."""
    from tfglow.optim import make_optimizer

    checkpoint = resolve_checkpoint(path)
    hparams = read_hparams(logdir_of(checkpoint))
    model = get_family(hparams.get("model", "glow")).build(model_config_from_hparams(hparams))
    optimizer = make_optimizer(hparams.get("optimizer", "adamax"), lr=hparams.get("lr", 1e-3),
                               beta1=hparams.get("beta1", 0.9), train_its=2,
                               polyak=not hparams.get("no_polyak", False))
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(checkpoint).expect_partial()
    optimizer.restore_slots_from(checkpoint)  # per-variable slots of older checkpoints
    if use_polyak and optimizer.polyak.enabled:
        optimizer.polyak.assign_average_to(model.trainable_variables)
    return model, hparams
