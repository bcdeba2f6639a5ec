"""Glow: the multi-scale model (Glow Figure 2b; RealNVP's multi-scale architecture).

Encoding, as the original (`model.py: codec, prior, _f_loss`), for L levels of K steps:

    z = squeeze2d(x)                                  [B, H/2, W/2, 4C]
    for level i in 0..L-1:
        z = step_K(...step_1(z))                      K FlowSteps
        if i < L-1:
            z1, eps_i = split_i(z)                    eps_i factored out, [B, h, w, c/2]
            z = squeeze2d(z1)
    eps_L = top_prior(z, y)                           [B, h, w, c]

Every map is a bijection, and the split and top priors standardise their latents, so
x -> (eps_1, ..., eps_L) is one bijection onto independent standard normals and

    log p(x) = sum_i log N(eps_i; 0, I) + log|det d(eps)/dx|                    (eq. 6-7)

`encode` returns these eps (as the original's `encode`, so temperature-T samples are
eps ~ N(0, T^2 I), which is the original's `eps_std`); `decode` is their exact inverse.
The objective, bits/dim and the n_bits_x handling are in tfglow.objective.
"""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfglow import objective
from tfglow.actnorm import ActNorm, data_dependent_init
from tfglow.config import GlowConfig
from tfglow.family import DensityModel
from tfglow.flow import FlowBijector
from tfglow.memory import check_gradient_mode, run_flow_steps, run_flow_steps_inverse
from tfglow.prior import Classifier, TopPrior, bits_y
from tfglow.split import Split2d
from tfglow.squeeze import squeeze2d, unsqueeze2d
from tfglow.stacked import StackedWeights, deferred_variables, initialize_untaken
from tfglow.step import FlowStep

tfb = tfp.bijectors
tfd = tfp.distributions


class Glow(DensityModel, keras.Model):
    """The Glow model of a GlowConfig. All shapes are fixed by the config.

    Images are uint8 [B, H, W, C]; the model works on preprocessed floats x in [-0.5, 0.5)
    (`preprocess`). Labels y are ints [B] in [0, n_y), needed iff config.ycond.

    gradient_checkpointing (also an attribute): how gradients pass through the flow steps,
    0 plain backprop, 1 recompute each step (the original's default), 2 reversible (Glow
    section 6); the same values and gradients, less memory (tfglow.memory).

    step_loop (attribute, default True): each level's K steps run as one traced step body
    in a loop over their stacked weights (tfglow.scan), so tracing and XLA compilation grow
    with the number of levels, not levels x depth; False traces every step separately (the
    same values to float rounding). Read at tracing.
    """

    #: See the class docstring.
    step_loop = True

    # FlowBijector protocol: the whole model is a bijector from x [H, W, C] to eps [D].
    event_ndims = 3
    inverse_event_ndims = 1

    def __init__(self, config=None, name="glow", gradient_checkpointing=0, precision="float32",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.gradient_checkpointing = gradient_checkpointing
        self.config = config if config is not None else GlowConfig()
        if not isinstance(self.config, GlowConfig):
            raise TypeError(f"Glow(config): expected a GlowConfig, got {type(config).__name__}")
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        size, channels = cfg.image_size // 2, 4 * cfg.n_channels
        self.flow_steps, self.splits, latent_shapes = [], [], []
        self.level_weights = []
        for level in range(cfg.n_levels):
            steps = []
            with deferred_variables() as created:
                for k in range(cfg.depth):
                    step = FlowStep(cfg.width, cfg.flow_permutation, cfg.flow_coupling,
                                    rng=rng, name=f"level{level}_step{k}")
                    step.build((None, size, size, channels))
                    steps.append(step)
            # The level's weights, stacked [K, ...]; the steps read their rows.
            store = StackedWeights(steps, name=f"level{level}_weights")
            initialize_untaken(created)
            self.flow_steps.extend(steps)
            self.level_weights.append(store)
            if level < cfg.n_levels - 1:
                split = Split2d(name=f"split{level}")
                split.build((None, size, size, channels))
                self.splits.append(split)
                latent_shapes.append((size, size, channels // 2))
                size, channels = size // 2, channels * 2
        self.prior = TopPrior(cfg.learntop, cfg.ycond, cfg.n_y, name="prior")
        self.prior.build((None, size, size, channels))
        latent_shapes.append((size, size, channels))
        self.latent_shapes = tuple(latent_shapes)
        self.classifier = None
        if cfg.ycond and cfg.weight_y > 0:
            self.classifier = Classifier(cfg.n_y, name="classifier")
            self.classifier.build((None, size, size, channels))
        # Keras wraps the lists above in containers that tf.train.Checkpoint does not see;
        # naming each layer as an attribute makes checkpoints hold every variable.
        for layer in (*self.flow_steps, *self.splits, *self.level_weights):
            setattr(self, layer.name, layer)
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                           name="initialized")
        self.precision = precision
        self.built = True

    @property
    def gradient_checkpointing(self):
        """Gradient mode of the flow steps: 0 backprop, 1 checkpointing, 2 reversible."""
        return self._gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, mode):
        self._gradient_checkpointing = check_gradient_mode(mode)

    @property
    def precision(self):
        """Compute dtype of the coupling networks: "float32" or "mixed_bfloat16".

        mixed_bfloat16 runs NN() of every coupling in bfloat16 (float32 variables, float32
        outputs); everything else (actnorm, 1x1 convolutions, priors, log-determinants) stays
        float32. bfloat16 has float32's exponent range, so no loss scaling is needed; float16
        is not offered because the NN's gradients would need it. Takes effect at the next trace.
        """
        return self._precision

    @precision.setter
    def precision(self, value):
        dtypes = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16}
        if value not in dtypes:
            raise ValueError(f"Glow precision={value!r} must be one of {sorted(dtypes)}")
        self._precision = value
        for step in self.flow_steps:
            if hasattr(step.coupling, "nn"):
                step.coupling.nn.nn_dtype = dtypes[value]

    # ----------------------------------------------------------------- data space
    def preprocess(self, x_uint8):
        """uint8 images [B, H, W, C] -> float32 [B, H, W, C] in [-0.5, 0.5)."""
        x = self._check_images(x_uint8, "x_uint8")
        return objective.preprocess(x, self.config.n_bits_x)

    def postprocess(self, x):
        """float [B, H, W, C] -> uint8 images."""
        return objective.postprocess(x, self.config.n_bits_x)

    # ----------------------------------------------------------------- the flow
    def steps_of_level(self, level):
        k = self.config.depth
        return self.flow_steps[level * k:(level + 1) * k]

    def encode_with_logdet(self, x, y=None):
        """x float [B, H, W, C] -> (eps list (shapes `latent_shapes`), log|det| [B], top z)."""
        logdet = tf.zeros([tf.shape(x)[0]], tf.float32)
        z = squeeze2d(x)
        eps = []
        for level in range(self.config.n_levels):
            z, logdet = run_flow_steps(self.steps_of_level(level), z, logdet,
                                       self.gradient_checkpointing, loop=self.step_loop)
            if level < self.config.n_levels - 1:
                z1, eps_level, d = self.splits[level].split(z)
                logdet += d
                eps.append(eps_level)
                z = squeeze2d(z1)
        eps_top, d = self.prior.forward(z, y=y)
        eps.append(eps_top)
        return eps, logdet + d, z

    def decode_with_logdet(self, eps, y=None):
        """eps list -> (x float [B, H, W, C], log|det dx/d(eps)| [B])."""
        z, logdet = self.prior.inverse(eps[-1], y=y)
        for level in reversed(range(self.config.n_levels)):
            if level < self.config.n_levels - 1:
                z, d = self.splits[level].merge(unsqueeze2d(z), eps[level])
                logdet += d
            z, logdet = run_flow_steps_inverse(self.steps_of_level(level), z, logdet,
                                               loop=self.step_loop)
        return unsqueeze2d(z), logdet

    def encode(self, x, y=None):
        """Preprocessed x float [B, H, W, C] -> list of L latents eps_i (no noise, exact)."""
        x = self._check_float_images(x, "x")
        y = self._check_labels(y, x)
        return self.encode_with_logdet(x, y)[0]

    def decode(self, zs, y=None):
        """List of L latents (as `encode` returns) -> preprocessed x float [B, H, W, C]."""
        zs = self._check_latents(zs)
        y = self._check_labels(y, zs[0])
        return self.decode_with_logdet(zs, y)[0]

    # ----------------------------------------------------------------- likelihood
    def log_prob(self, x, y=None):
        """log p(x) in nats of a continuous x float [B, H, W, C] (no discretisation term)."""
        eps, logdet, _ = self.encode_with_logdet(x, y)
        return tf.add_n([objective.standard_normal_logp(e) for e in eps]) + logdet

    def loss_terms(self, x_uint8, y=None, noise=None, seed=None, training=False):
        """The original's training objective for uint8 images; dict of [B] tensors:
        (`training` changes nothing: Glow has no dropout)

        bits_x (dequantised bits per sub-pixel), bits_y (classifier bits, 0 unless ycond and
        weight_y > 0), loss = bits_x + weight_y * bits_y, and pred_error (0/1 per image; 1
        without a classifier, as the original).
        """
        cfg = self.config
        x = self.preprocess(x_uint8)
        y = self._check_labels(y, x)
        x = objective.dequantize(x, cfg.n_bits_x, noise=noise, seed=seed)
        eps, logdet, z_top = self.encode_with_logdet(x, y)
        log_density = tf.add_n([objective.standard_normal_logp(e) for e in eps]) + logdet
        bits_x = objective.bits_per_dim(log_density, cfg.n_dims, cfg.n_bits_x)
        if self.classifier is not None:
            logits = self.classifier(z_top)
            bits_cls = bits_y(logits, y)
            pred_error = tf.cast(tf.argmax(logits, -1, output_type=tf.int32)
                                 != tf.cast(y, tf.int32), tf.float32)
        else:
            bits_cls, pred_error = tf.zeros_like(bits_x), tf.ones_like(bits_x)
        return {"loss": bits_x + cfg.weight_y * bits_cls, "bits_x": bits_x, "bits_y": bits_cls,
                "pred_error": pred_error}

    def bits_per_dim(self, x_uint8, y=None, noise=None, seed=None):
        """Dequantised bits per sub-pixel of uint8 images, [B] (the original's bits_x).

        noise: optional dequantisation noise in [0, 1) of shape [B, H, W, C] (in units of one
        bin); drawn uniformly (from `seed` if given) otherwise.
        """
        return self.loss_terms(x_uint8, y, noise=noise, seed=seed)["bits_x"]

    def call(self, x_uint8, y=None):
        return self.bits_per_dim(x_uint8, y)

    # ----------------------------------------------------------------- sampling
    def sample(self, n, temperature=0.7, y=None, seed=None):
        """n uint8 images [n, H, W, C] with eps ~ N(0, temperature^2 I) at every level."""
        n = int(n)
        if n < 1:
            raise ValueError(f"sample: n={n} must be >= 1")
        if y is None and self.config.ycond:
            raise ValueError("sample: the model is class-conditional (ycond): pass y [n]")
        eps = []
        for i, shape in enumerate(self.latent_shapes):
            if seed is None:
                e = tf.random.normal((n,) + shape)
            else:
                e = tf.random.stateless_normal((n,) + shape, seed=[int(seed), i])
            eps.append(e * temperature)
        y = self._check_labels(y, eps[0])
        return self.postprocess(self.decode_with_logdet(eps, y)[0])

    # ----------------------------------------------------------------- init
    def actnorm_layers(self):
        return [layer for layer in self._flatten_layers() if isinstance(layer, ActNorm)]

    def initialize(self, x_uint8, y=None, seed=None):
        """Data-dependent init of every actnorm from a batch (once; state saved with weights).

        Runs the dequantised encoding pass with each actnorm setting its bias and scale from
        its input, in order. Returns True if it initialised, False if already initialised.
        """
        if self.is_initialized:
            return False
        x = objective.dequantize(self.preprocess(x_uint8), self.config.n_bits_x,
                                 seed=[self.config.seed if seed is None else int(seed), 1])
        if y is None and self.config.ycond:
            # Labels only move the top prior, which has no actnorm: any labels do.
            y = tf.zeros([tf.shape(x)[0]], tf.int32)
        y = self._check_labels(y, x)
        with data_dependent_init():
            self.encode_with_logdet(x, y)
        self.initialized.assign(1.0)
        return True

    # ----------------------------------------------------------------- family (tfglow.family)
    @property
    def conditional(self):
        return self.config.ycond

    @property
    def stats(self):
        """The loss_terms a run logs (pred_error only with a classifier's labels, ycond)."""
        return ("loss", "bits_x", "bits_y") + (("pred_error",) if self.config.ycond else ())

    def bin_centres(self, x_uint8):
        """uint8 [B, H, W, C] -> float32: preprocess(x) + 0.5 / n_bins, each bin's centre."""
        return self.preprocess(x_uint8) + 0.5 / self.config.n_bins

    def draw_noise(self, shape, seed):
        """Uniform dequantisation noise in [0, 1) (units of one bin) from seed [2]."""
        return tf.random.stateless_uniform(shape, seed)

    def init_pass(self, x_uint8, y=None, noise=None, seed=None):
        """The data-dependent init's pass: encode the dequantised batch (labels only move
        the top prior, which has no actnorm, so zeros stand in for them)."""
        x = objective.dequantize(self.preprocess(x_uint8), self.config.n_bits_x, noise=noise,
                                 seed=seed)
        self.encode_with_logdet(x, tf.zeros_like(y) if self.config.ycond else None)

    # ----------------------------------------------------------------- TFP
    def forward(self, x, y=None):
        """Bijector protocol: x [B, H, W, C] -> (eps flattened and concatenated [B, D], fldj)."""
        eps, logdet, _ = self.encode_with_logdet(x, y)
        return tf.concat([tf.reshape(e, [tf.shape(e)[0], -1]) for e in eps], axis=1), logdet

    def inverse(self, flat, y=None):
        sizes = [int(np.prod(s)) for s in self.latent_shapes]
        parts = tf.split(flat, sizes, axis=-1)
        eps = [tf.reshape(p, [-1, *s]) for p, s in zip(parts, self.latent_shapes)]
        return self.decode_with_logdet(eps, y)

    def forward_event_shape(self, shape):
        return (self.config.n_dims,)

    def inverse_event_shape(self, shape):
        return self.config.image_shape

    @property
    def bijector(self):
        """The model as a TFP bijector: forward = encode (x -> eps [D]), inverse = decode."""
        return FlowBijector(self, name="glow")

    @property
    def distribution(self):
        """tfd.TransformedDistribution over preprocessed x [H, W, C] (continuous density).

        For ycond models pass the labels as `bijector_kwargs={"labels": y}`.
        """
        base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=[self.config.n_dims])
        return tfd.TransformedDistribution(base, tfb.Invert(self.bijector))

    # ----------------------------------------------------------------- checks
    def _check_labels(self, y, x):
        if not self.config.ycond:
            return None if y is None else tf.convert_to_tensor(y)
        if y is None:
            raise ValueError("y is required: the model is class-conditional (ycond=True); pass "
                             f"int labels [B] in [0, {self.config.n_y})")
        y = tf.convert_to_tensor(y)
        if not y.dtype.is_integer:
            raise TypeError(f"y must be int labels [B] in [0, {self.config.n_y}); got dtype "
                            f"{y.dtype.name}")
        if y.shape.rank != 1 or (y.shape[0] is not None and x.shape[0] is not None
                                 and y.shape[0] != x.shape[0]):
            raise ValueError(f"y must have shape [B] = [{x.shape[0]}]; got {y.shape}")
        n_y = self.config.n_y
        if tf.executing_eagerly():
            bad = y.numpy()[(y.numpy() < 0) | (y.numpy() >= n_y)]
            if bad.size:
                raise ValueError(f"y has labels outside [0, n_y={n_y}): {sorted(set(bad.tolist()))[:10]}")
        else:
            msg = f"y has labels outside [0, n_y={n_y})"
            with tf.control_dependencies([
                    tf.debugging.assert_non_negative(y, message=msg),
                    tf.debugging.assert_less(y, tf.cast(n_y, y.dtype), message=msg)]):
                y = tf.identity(y)
        return tf.cast(y, tf.int32)
