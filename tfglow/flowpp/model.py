"""FlowPP: the Flow++ model (Ho et al., 2019) as the official code builds it (run_cifar.py).

Encoding of the dequantised image x + u (pixel units, [0, 256)), for the cifar10 layout:

    h = ImgProc(x + u)                                    logit(. * 0.9/256 + 0.05)  [32, 32, 3]
    stage "column:4":  column split -> 4 steps -> merge                               [32, 32, 3]
    "squeeze":         tf.nn.space_to_depth                                           [16, 16, 12]
    stage "channel:2": channel split -> 2 steps -> merge
    stage "column:3":  column split -> 3 steps -> merge  = z                          [16, 16, 12]

Each step is [Norm, Pointwise, Coupling, TupleFlip] (tfglow.flowpp.step); with an odd number of
steps the halves come out swapped, which the merge keeps, as the official code.

    log p(x + u) = log N(z; 0, I) + log|dz/d(x + u)|                      (eq. 1)
    loss per image = -(log p(x + u) - log q(u|x)) / (D ln 2)      bits/dim (eq. 12;
                                                                  flow_training.py:15-22)

No -D log 256 term: ImgProc's log-determinant measures the density per unit of pixel value.
`importance_weighted_bits_per_dim` is the IWAE bound with S samples of u (flow_training.py:
376-394): -(m + log mean_s exp(r_s - m)) / (D ln 2), r_s = log p(x + u_s) - log q(u_s|x),
log-mean-exp in float64.
"""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfglow.family import DensityModel
from tfglow.flow import FlowBijector, FlowLayer
from tfglow.flowpp.conditioner import sub_seed
from tfglow.flowpp.config import FlowPPConfig
from tfglow.flowpp.dequant import UniformDequantizer, VariationalDequantizer
from tfglow.flowpp.logit import ImgProc
from tfglow.flowpp.splits import SpaceToDepth, merge, split, split_shape
from tfglow.flowpp.step import FlowPPStep, inverse_pair_steps, run_pair_steps
from tfglow.objective import standard_normal_logp

tfb = tfp.bijectors
tfd = tfp.distributions

#: The dtype of the exact `encode` / `decode` (the flow runs in it with its float32 weights).
EXACT_DTYPE = tf.float64


class Stage(FlowLayer):
    """Split -> steps -> merge on [B, H, W, C] (one "column:K" / "channel:K" entry)."""

    def __init__(self, kind, steps, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.steps = kind, list(steps)
        for i, step in enumerate(self.steps):
            setattr(self, f"step{i}", step)

    def build(self, input_shape):
        b, *shape = tuple(input_shape)
        half = split_shape(tuple(shape), self.kind)
        for step in self.steps:
            step.build((b,) + half)
        self.built = True

    def forward(self, x, training=False, seed=None, checkpoint=False, **cond):
        a, b = split(x, self.kind)
        a, b, logdet = run_pair_steps(self.steps, a, b, tf.zeros([tf.shape(x)[0]], x.dtype), None,
                                      training, seed, checkpoint)
        return merge(a, b, self.kind), logdet

    def inverse(self, y, **cond):
        a, b = split(y, self.kind)
        a, b, logdet = inverse_pair_steps(self.steps, a, b, tf.zeros([tf.shape(y)[0]], y.dtype))
        return merge(a, b, self.kind), logdet


class FlowPP(DensityModel, keras.Model):
    """The Flow++ model of a FlowPPConfig (see the module docstring). Shapes are fixed.

    Images are uint8 [B, H, W, C]; the flow works on float pixel values in [0, 256)
    (`preprocess` gives x as floats; the dequantised input is x + u).
    gradient_checkpointing: recompute each step in the backward pass (same values and
    gradients, a fraction of the activation memory).
    """

    # FlowBijector protocol: x + u [H, W, C] <-> z [latent_shape].
    event_ndims = 3
    inverse_event_ndims = 3
    #: encode's input, for error messages (tfglow.family).
    float_input = "float pixel values in [0, 256) (model.preprocess plus dequantization noise)"
    #: The loss_terms a run logs (tfglow.family).
    stats = ("loss", "bits_x")
    #: Train and evaluation steps run without Grappler: the train step's first call is ~14 s
    #: shorter at the cifar10 preset, the steps no slower, the peak memory ~4% higher
    #: (tfglow.grappler).
    graph_optimizer = False

    def __init__(self, config=None, name="flowpp", gradient_checkpointing=False,
                 precision="float32", **kwargs):
        super().__init__(name=name, **kwargs)
        if precision != "float32":  # the trainer's argument for every family (tfglow.family)
            raise ValueError(f"FlowPP precision={precision!r}: only float32 is supported")
        self.precision = precision
        self.config = config if config is not None else FlowPPConfig()
        if not isinstance(self.config, FlowPPConfig):
            raise TypeError(f"FlowPP(config): expected a FlowPPConfig, got "
                            f"{type(config).__name__}")
        self.gradient_checkpointing = bool(gradient_checkpointing)
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        step_kwargs = dict(filters=cfg.filters, blocks=cfg.blocks, components=cfg.components,
                           heads=cfg.heads, dropout=cfg.dropout, attention=cfg.attention,
                           coupling=cfg.coupling, pointwise=cfg.pointwise, inverse=cfg.inverse,
                           mixture_dtype=cfg.mixture_dtype, rng=rng)
        self.imgproc = ImgProc(name="imgproc")
        self.flows = [self.imgproc]
        n_stage = 0
        for kind, steps, shape in cfg.layout():
            if kind == "squeeze":
                layer = SpaceToDepth(name=f"squeeze{n_stage}")
            else:
                layer = Stage(kind, [FlowPPStep(name=f"step{i}", **step_kwargs)
                                     for i in range(steps)], name=f"stage{n_stage}")
            layer.build((None,) + shape)
            setattr(self, layer.name, layer)
            self.flows.append(layer)
            n_stage += 1
        if cfg.dequantization == "variational":
            self.dequantizer = VariationalDequantizer(
                steps=cfg.dequant_steps, filters=cfg.dequant_filters, blocks=cfg.dequant_blocks,
                components=cfg.components, heads=cfg.heads, dropout=cfg.dropout,
                attention=cfg.dequant_attention, coupling=cfg.coupling,
                context_channels=cfg.dequant_context_channels,
                context_blocks=cfg.dequant_context_blocks, pointwise=cfg.pointwise,
                inverse=cfg.inverse, mixture_dtype=cfg.mixture_dtype, rng=rng,
                name="dequantizer")
        else:
            self.dequantizer = UniformDequantizer(name="dequantizer")
        self.dequantizer.build((None,) + cfg.image_shape)
        self.latent_shapes = (cfg.latent_shape,)
        self.initialized = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                           name="initialized")
        self.built = True

    # ----------------------------------------------------------------- data space
    def preprocess(self, x_uint8):
        """uint8 images [B, H, W, C] -> float32 pixel values 0..255 (the flow's input space)."""
        return tf.cast(self._check_images(x_uint8, "x_uint8"), tf.float32)

    def postprocess(self, x):
        """float pixel values -> uint8 (clip to [0, 255], truncate, as the official samples)."""
        return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)

    # ----------------------------------------------------------------- the flow
    def encode_with_logdet(self, x, training=False, seed=None):
        """x + u float [B, H, W, C] in [0, 256) -> (z [B, *latent_shape], log|dz/dx| [B])."""
        logdet = tf.zeros([tf.shape(x)[0]], x.dtype)
        h = x
        for i, layer in enumerate(self.flows):
            if isinstance(layer, Stage):
                h, d = layer.forward(h, training=training,
                                     seed=None if seed is None else sub_seed(seed, i),
                                     checkpoint=self.gradient_checkpointing)
            else:
                h, d = layer.forward(h)
            logdet += d
        return h, logdet

    def decode_with_logdet(self, z):
        """z [B, *latent_shape] -> (x float [B, H, W, C], log|dx/dz| [B])."""
        logdet = tf.zeros([tf.shape(z)[0]], z.dtype)
        for layer in reversed(self.flows):
            z, d = layer.inverse(z)
            logdet += d
        return z, logdet

    def encode(self, x, y=None):
        """Float pixel values x [B, H, W, C] (e.g. x + u) -> [z] (one float32 latent; exact).
        y: ignored (unconditional), as in every method taking it.

        Computed in float64 with the float32 weights (EXACT_DTYPE): in float32 the cifar10
        model's decode(encode(x)) is off by up to 2.5e-4 pixel units (the sigmoid at the end of
        the inverse multiplies errors in logit space by up to 71), in float64 by 1.5e-5, the
        float32 rounding of the result (benchmarks/flowpp.py, "inverse" rows). Training,
        bits/dim and sampling stay in float32.
        """
        x = tf.cast(self._check_float_images(x, "x"), EXACT_DTYPE)
        return [tf.cast(self.encode_with_logdet(x)[0], tf.float32)]

    def decode(self, zs, y=None):
        """[z] (as `encode` returns; or z alone) -> float32 pixel values [B, H, W, C]; computed
        in float64 as `encode`."""
        z = tf.cast(self._check_latent(zs), EXACT_DTYPE)
        return tf.cast(self.decode_with_logdet(z)[0], tf.float32)

    # ----------------------------------------------------------------- likelihood
    def log_prob(self, x):
        """log p(x) in nats of continuous pixel values x [B, H, W, C] (density per pixel unit)."""
        z, logdet = self.encode_with_logdet(x)
        return standard_normal_logp(z) + logdet

    def dequantize(self, x, noise=None, seed=None, training=False):
        """x float pixel values -> (x + u, log q(u|x) [B]); noise: eps (variational) or u
        (uniform); else drawn from seed ([2] ints; random if None)."""
        u, log_q = self.dequantizer.sample(x, noise=noise, seed=seed, training=training,
                                           checkpoint=self.gradient_checkpointing)
        return x + u, log_q

    def loss_terms(self, x_uint8, y=None, noise=None, seed=None, training=False):
        """One-sample objective of uint8 images; dict of [B] tensors: loss (= bits_x, bits/dim,
        the training loss), log_px (log p(x + u)), log_q (log q(u|x)), log_ratio (log_px -
        log_q, nats). training: dropout on (seed [2] draws the masks; random if None)."""
        x = self.preprocess(x_uint8)
        if seed is None and (training or noise is None):
            seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int32)
        seed = None if seed is None else tf.convert_to_tensor(seed, tf.int32)
        xu, log_q = self.dequantize(x, noise=noise,
                                    seed=None if seed is None else sub_seed(seed, 0),
                                    training=training)
        z, logdet = self.encode_with_logdet(xu, training=training,
                                            seed=None if seed is None else sub_seed(seed, 1))
        log_px = standard_normal_logp(z) + logdet
        log_ratio = log_px - log_q
        bits = -log_ratio / (self.config.n_dims * np.log(2.0))
        return {"loss": bits, "bits_x": bits, "log_px": log_px, "log_q": log_q,
                "log_ratio": log_ratio}

    def bits_per_dim(self, x_uint8, y=None, noise=None, seed=None):
        """One-sample bits/dim [B] of uint8 images (eval mode: no dropout)."""
        return self.loss_terms(x_uint8, noise=noise, seed=seed)["bits_x"]

    def call(self, x_uint8):
        return self.bits_per_dim(x_uint8)

    def importance_weighted_bits_per_dim(self, x_uint8, n_samples, batch_samples=None,
                                         seed=None):
        """IWAE bits/dim [B] (float64) with n_samples dequantization samples per image.

        Samples are drawn in chunks of batch_samples (default all at once) copies of the
        batch; chunk 0 uses `seed` itself, so n_samples=1 equals bits_per_dim(x, seed=seed).
        """
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} must be >= 1")
        chunk = n_samples if batch_samples is None else max(1, int(batch_samples))
        x_uint8 = self._check_images(x_uint8, "x_uint8")
        if seed is None:
            seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int32)
        seed = tf.convert_to_tensor(seed, tf.int32)
        b = int(x_uint8.shape[0])
        ratios = []
        for i, start in enumerate(range(0, n_samples, chunk)):
            reps = min(chunk, n_samples - start)
            tiled = tf.tile(x_uint8, [reps, 1, 1, 1])
            s = seed if i == 0 else sub_seed(seed, i)
            r = self.loss_terms(tiled, seed=s)["log_ratio"]
            ratios.append(tf.reshape(r, [reps, b]))
        r = tf.cast(tf.concat(ratios, axis=0), tf.float64)
        m = tf.reduce_max(r, axis=0)
        log_mean = m + tf.math.log(tf.reduce_mean(tf.exp(r - m), axis=0))
        return -log_mean / (self.config.n_dims * np.log(2.0))

    # ----------------------------------------------------------------- sampling
    def sample(self, n, temperature=1.0, y=None, seed=None):
        """n uint8 images [n, H, W, C] from z ~ N(0, temperature^2 I)."""
        n = int(n)
        if n < 1:
            raise ValueError(f"sample: n={n} must be >= 1")
        shape = (n,) + self.config.latent_shape
        z = (tf.random.normal(shape) if seed is None
             else tf.random.stateless_normal(shape, [int(seed), 0]))
        return self.postprocess(self.decode_with_logdet(z * temperature)[0])

    # ----------------------------------------------------------------- family (tfglow.family)
    def bin_centres(self, x_uint8):
        """uint8 [B, H, W, C] -> float32 pixel values + 0.5, the centre of each bin."""
        return self.preprocess(x_uint8) + 0.5

    def draw_noise(self, shape, seed):
        """The noise loss_terms takes, from seed [2]: eps ~ N(0, I) of the variational
        dequantizer, or u ~ U[0, 1) for uniform dequantization."""
        if self.config.dequantization == "variational":
            return tf.random.stateless_normal(shape, seed)
        return tf.random.stateless_uniform(shape, seed)

    def init_pass(self, x_uint8, y=None, noise=None, seed=None):
        """The official data-dependent init's pass (flow_training.py:119-125; `initialize`):
        the dequantizer and the flow on this batch with dropout on, each Norm, convolution and
        1x1 setting itself from its input in turn; seed [2]."""
        checkpoint, self.gradient_checkpointing = self.gradient_checkpointing, False
        try:
            self.loss_terms(x_uint8, noise=noise, seed=seed, training=True)
        finally:
            self.gradient_checkpointing = checkpoint

    # ----------------------------------------------------------------- TFP
    def forward(self, x, **cond):
        return self.encode_with_logdet(x)

    def inverse(self, z, **cond):
        return self.decode_with_logdet(z)

    def forward_event_shape(self, shape):
        return self.config.latent_shape

    def inverse_event_shape(self, shape):
        return self.config.image_shape

    @property
    def bijector(self):
        """The flow as a TFP bijector: forward = encode (x + u -> z), inverse = decode."""
        return FlowBijector(self, name="flowpp")

    @property
    def distribution(self):
        """tfd.TransformedDistribution over x + u [H, W, C] (continuous, per pixel unit)."""
        base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=self.config.latent_shape)
        return tfd.TransformedDistribution(base, tfb.Invert(self.bijector))

    # ----------------------------------------------------------------- checks
    def _check_latent(self, zs):
        z = zs[0] if isinstance(zs, (list, tuple)) and len(zs) == 1 else zs
        if isinstance(z, (list, tuple)):
            raise ValueError(f"zs must be [z] (one latent); got a list of {len(z)}")
        z = tf.cast(tf.convert_to_tensor(z), tf.float32)
        want = self.config.latent_shape
        if z.shape.rank != 4 or tuple(z.shape[1:]) != want:
            raise ValueError(f"zs must hold z of shape [B, {', '.join(map(str, want))}]; got "
                             f"{z.shape}")
        return z
