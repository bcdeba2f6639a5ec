"""Model families: what a density model provides so that one trainer, evaluator and exporter
serve every family (Glow, Flow++, hierarchical), and the registry behind `train.py --model NAME`.

A model is a keras.Model that mixes in `DensityModel` and provides (B = batch; images are
uint8 [B, H, W, C]; y int labels [B], read only by models with `conditional`):

    config                      frozen dataclass: image_size, n_channels, image_shape, n_dims,
                                seed, to_dict(), from_dict(d) (the run's hparams.json holds it)
    conditional                 True if the model takes class labels y
    stats                       names of the loss_terms entries a run logs, "loss" first
    min_batch                   fewest images loss_terms takes (1; the hierarchical model 2:
                                its encoder noise is scaled by a minibatch statistic)
    latent_shapes               ((h, w, c), ...): one shape per latent of encode
    initialized                 non-trainable flag variable (saved with the weights)
    preprocess(images)          uint8 -> the flow's float input space; postprocess: back
    bin_centres(images)         the float centre of each pixel's bin: decode(encode(.)) of it
                                postprocesses to the images exactly
    draw_noise(shape, seed)     the dequantisation noise loss_terms takes, stateless in seed [2]
                                (the trainer and the evaluator key it by step / by image)
    init_pass(images, y, noise, seed)   the data-dependent init's forward pass; the caller
                                opens tfglow.actnorm.data_dependent_init around it
    loss_terms(images, y, noise, seed, training) -> {name: [B]}: "loss" (minimised, mean
                                over the batch), "bits_x" (bits/dim), ...; `seed` [2] draws
                                dropout masks when training
    encode(x, y) -> [z_i]       x float in preprocess's space; exact inverse: decode(zs, y)
    sample(n, temperature, y, seed) -> uint8 [n, H, W, C]   (z ~ N(0, T^2 I))
  optional:
    unit_temperature_latents    indices of latents sample(temperature=T) draws at T = 1
                                (hierarchical: the 1x1 latent, as hflow)
    importance_weighted_bits_per_dim    models with a variational dequantizer (Flow++) or
                                stochastic encoders (hierarchical)
    parameter_groups() -> {group: [variables]}   per-group learning rates (hierarchical;
                                the trainer then takes tfglow.hierarchical.schedule's rates)
    graph_optimizer             False: the train step and the evaluator's compiled functions
                                run without TensorFlow's Grappler (Flow++; tfglow.grappler);
                                True by default

`DensityModel` holds the input checks every family shares. `FAMILIES` maps a name to its
config class, model class, presets (for --preset) and train.py defaults.
"""
import dataclasses
import importlib

import tensorflow as tf

from tfglow.actnorm import data_dependent_init


# ---------------------------------------------------------------------------- input checks

def check_shape(x, expected, name, what=""):
    """x with rank 4 and shape [B, *expected] (None dims pass), else a ValueError naming x."""
    got = tuple(x.shape[1:]) if x.shape.rank is not None else None
    if x.shape.rank != 4 or any(g is not None and g != e for g, e in zip(got, expected)):
        raise ValueError(f"{name} must have shape [B, {', '.join(map(str, expected))}]"
                         f"{f' ({what})' if what else ''}; got {x.shape}")
    return x


def check_latents(zs, shapes):
    """A list of len(shapes) float32 latents [B, *shape] with one B, else a ValueError."""
    if not isinstance(zs, (list, tuple)) or len(zs) != len(shapes):
        raise ValueError(f"zs must be a list of {len(shapes)} latents of shapes "
                         f"{[('B',) + tuple(s) for s in shapes]}; got {type(zs).__name__} of "
                         f"length {len(zs) if hasattr(zs, '__len__') else '?'}")
    zs = [tf.cast(tf.convert_to_tensor(z), tf.float32) for z in zs]
    batch = zs[0].shape[0]
    for i, (z, shape) in enumerate(zip(zs, shapes)):
        if (z.shape.rank != 4 or tuple(z.shape[1:]) != tuple(shape)
                or (batch is not None and z.shape[0] is not None and z.shape[0] != batch)):
            raise ValueError(f"zs[{i}] must have shape [B, {', '.join(map(str, shape))}] "
                             f"with the same B for every level; got {z.shape}")
    return zs


class DensityModel:
    """Mix-in of every model family: the shared input checks (see the module docstring for
    what a model provides). `float_input` says what encode's x is, for error messages."""

    float_input = "preprocessed float images (model.preprocess)"
    graph_optimizer = True
    conditional = False
    min_batch = 1

    def _check_shape(self, x, name):
        cfg = self.config
        return check_shape(x, cfg.image_shape, name,
                           f"image_size={cfg.image_size}, n_channels={cfg.n_channels}")

    def _check_images(self, x, name):
        dtype = getattr(x, "dtype", None)
        if dtype is None or tf.as_dtype(dtype) != tf.uint8:
            raise TypeError(f"{name} must be uint8 images [B, H, W, C] with values 0..255, got "
                            f"dtype {dtype} (convert with tf.cast only if they already are 0..255)")
        return self._check_shape(tf.convert_to_tensor(x), name)

    def _check_float_images(self, x, name):
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"{name} must be {self.float_input}; got dtype {x.dtype.name}")
        return self._check_shape(tf.cast(x, tf.float32), name)

    def _check_latents(self, zs):
        return check_latents(zs, self.latent_shapes)

    @property
    def is_initialized(self):
        return bool(self.initialized.numpy())

    def initialize(self, x_uint8, seed=None):
        """The data-dependent init: `init_pass` on this batch inside data_dependent_init, once
        (the `initialized` flag is saved with the weights); True if it initialised. Glow keeps
        its own (labels and noise of the original's init)."""
        if self.is_initialized:
            return False
        with data_dependent_init():
            self.init_pass(x_uint8, seed=[self.config.seed if seed is None else int(seed), 1])
        self.initialized.assign(1.0)
        return True


# ---------------------------------------------------------------------------- the registry

@dataclasses.dataclass(frozen=True)
class Family:
    """One model family as train.py sees it.

    model, config, presets: "module:name" (imported on first use, so that the models can
    import this module); the presets are {name: config fields}, offered to --preset as
    preset_prefix + name. problem_presets: {problem: --preset name} for problems with a
    CPU-sized default (digits). train_defaults: train.py flag values the family uses when a
    flag is not given (Glow's are hparams.py's, the original's). pad_digits: the digits
    (8x8) are served zero-padded to the preset's image_size (the hierarchical model's lowest
    level is 8x8, so its smallest image is 16x16).
    """
    name: str
    model: str
    config: str
    preset_table: str
    preset_prefix: str
    problem_presets: dict
    train_defaults: dict
    pad_digits: bool = False

    @property
    def model_class(self):
        return _load(self.model)

    @property
    def config_class(self):
        return _load(self.config)

    @property
    def presets(self):
        return {self.preset_prefix + k: v for k, v in _load(self.preset_table).items()}

    def build(self, config, **kwargs):
        return self.model_class(config, **kwargs)


def _load(path):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


#: The hierarchical model's training, as hflow (tfglow.hierarchical.schedule; reference
#: "Loss, training"): Adam (0.9, 0.999), --lr 5e-3 for the flows (decoders x0.4 = 2e-3, encoders
#: x0.1 = 5e-4) with hflow's decay and the encoders frozen from epoch 60, no warmup, batch 16 as
#: 4 micro-batches of 4 (gradients averaged), clipped at global norm 50, an EMA that copies the
#: weights during the first epoch and then decays by 0.995 per step, init on 64 images.
#: anchor_size None: the image size (no anchor scaling of the batches).
HIERARCHICAL_TRAINING = dict(optimizer="adam", lr=5e-3, beta2=0.999, ema_decay=0.995,
                             ema_copy_epochs=1, warmup_steps=0, epochs_warmup=0, grad_clip=50.0,
                             n_batch_train=16, grad_accum=4, n_batch_init=64,
                             freeze_encoder_epoch=60, anchor_size=None, epochs_full_valid=1,
                             gradient_checkpointing=0)

#: Flow++'s training, as the official code (run_cifar.py:90-127, flow_training.py:66-294):
#: Adam (0.9, 0.999), lr 3e-4 with a linear warmup over 2000 steps, batch 64, gradients
#: clipped at global norm 1.0, EMA 0.999 of the weights for validation, samples and export,
#: init on 128 images, validation every epoch. Dropout 0.2 is in the config (FlowPPConfig).
FLOWPP_TRAINING = dict(optimizer="adam", lr=3e-4, beta2=0.999, ema_decay=0.999,
                       warmup_steps=2000, epochs_warmup=0, grad_clip=1.0, n_batch_init=128,
                       epochs_full_valid=1, gradient_checkpointing=0)

FAMILIES = {
    "glow": Family("glow", "tfglow.model:Glow", "tfglow.config:GlowConfig",
                   "tfglow.config:PRESETS", "", {"digits": "digits"}, {}),
    "flowpp": Family("flowpp", "tfglow.flowpp.model:FlowPP", "tfglow.flowpp.config:FlowPPConfig",
                     "tfglow.flowpp.config:PRESETS", "flowpp_", {"digits": "flowpp_digits"},
                     FLOWPP_TRAINING),
    "hierarchical": Family("hierarchical", "tfglow.hierarchical.model:HierarchicalFlow",
                           "tfglow.hierarchical.config:HierarchicalConfig",
                           "tfglow.hierarchical.config:PRESETS", "hierarchical_",
                           {"digits": "hierarchical_digits16"}, HIERARCHICAL_TRAINING,
                           pad_digits=True),
}


def get_family(name):
    if name not in FAMILIES:
        raise ValueError(f"--model {name!r} is not known; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_of_preset(name):
    """The family whose presets hold `name`, else None."""
    for family in FAMILIES.values():
        if name in family.presets:
            return family
    return None
