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


def restore_checkpoint(checkpoint, model, optimizer=None, strict=True, **others):
    """Restores `model`, `optimizer` and `others` (trackables by checkpoint name, e.g. step)
    from `checkpoint`, in this layout or an older one:

      - per-step model weights (before tfglow.stacked: one variable per flow step), with
        their optimizer slots stacked by shape over that model's variables or one per
        variable: converted (stacked.restore_per_step_model, restore_per_step_layout);
      - per-variable optimizer slots (before stacked slots): converted (restore_slots_from).

    strict: every object of the model, optimizer and others must be in the checkpoint (else
    ValueError); False ignores what is absent (e.g. an optimizer when only reading weights).
    Returns "current", "per_step" or "per_variable_slots" (the layout found).
    """
    from tfglow import stacked

    reader = tf.train.load_checkpoint(checkpoint)
    if stacked.restore_per_step_model(model, reader):
        if optimizer is not None:
            optimizer.restore_per_step_layout(checkpoint, stacked.per_step_layout(model))
        if others:
            status = tf.train.Checkpoint(**others).restore(checkpoint)
            status.assert_existing_objects_matched() if strict else status.expect_partial()
        return "per_step"
    trackables = dict(others, model=model)
    if optimizer is not None:
        trackables["optimizer"] = optimizer
    status = tf.train.Checkpoint(**trackables).restore(checkpoint)
    if optimizer is not None and optimizer.restore_slots_from(checkpoint):
        # Its slots were converted; every other object must still match.
        status.expect_partial()
        trackables.pop("optimizer")
        rest = tf.train.Checkpoint(**trackables).restore(checkpoint)
        rest.assert_existing_objects_matched() if strict else rest.expect_partial()
        return "per_variable_slots"
    status.assert_existing_objects_matched() if strict else status.expect_partial()
    return "current"


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
    restore_checkpoint(checkpoint, model, optimizer, strict=False)
    if use_polyak and optimizer.polyak.enabled:
        optimizer.polyak.assign_average_to(model.trainable_variables)
    return model, hparams
