"""Dequantization q(u|x): the variational flow of Flow++ (section 3.1.2; run_cifar.py:23-54)
and uniform noise (the ablation, abl_nodequant.py:23-25).

Variational (eq. 12): with eps ~ N(0, I) [B, H, W, C] and the context of x,

    context = ContextNet(x):  x/256 - 0.5 -> column split -> halves concatenated [H, W/2, 2C]
              -> conv3x3 to 32 -> 3 gated convs (second conv 3x3, no 1x1)
    u = sigmoid(merge(steps(column_split(eps); context)))   4 steps, couplings with 2 blocks
    log q(u|x) = log N(eps; 0, I) - log|du/deps|

`VariationalDequantizer` is the flow eps -> u as a FlowLayer (cond: image, the uint8 values
as floats), so log q(u|x) is also available as a TFP TransformedDistribution. `sample` draws
eps and returns (u, log q(u|x)). Uniform: u ~ U[0, 1), log q = 0.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.flow import FlowLayer, sum_except_batch
from tfglow.flowpp.conditioner import GatedConv, InitConv, sub_seed
from tfglow.flowpp.splits import column_merge, column_split
from tfglow.flowpp.step import FlowPPStep, inverse_pair_steps, run_pair_steps
from tfglow.objective import standard_normal_logp


class ContextNet(keras.layers.Layer):
    """image [B, H, W, C] (pixel values 0..255) -> context [B, H, W/2, channels]."""

    def __init__(self, channels=32, blocks=3, dropout=0.0, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.n_blocks, self.rate = int(channels), int(blocks), float(dropout)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, image_shape):
        b, h, w, c = tuple(image_shape)
        self.proj = InitConv(self.channels, 3, rng=self._rng, name="proj")
        self.proj.build((b, h, w // 2, 2 * c))
        self.convs = []
        for i in range(self.n_blocks):
            conv = GatedConv(0, use_nin=False, dropout=self.rate, rng=self._rng, name=f"c{i}")
            conv.build((b, h, w // 2, self.channels))
            setattr(self, f"c{i}", conv)
            self.convs.append(conv)
        self.built = True

    def call(self, image, training=False, seed=None):
        a, b = column_split(image / 256.0 - 0.5, "image")
        h = self.proj(tf.concat([a, b], axis=-1))
        for i, conv in enumerate(self.convs):
            h = conv(h, training=training, seed=None if seed is None else sub_seed(seed, i))
        return h


class VariationalDequantizer(FlowLayer):
    """The flow eps [B, H, W, C] -> u in (0, 1) given the image; see the module docstring.

    cond of forward/inverse: image (float pixel values [B, H, W, C]) or a precomputed context;
    training, seed (dropout), checkpoint (gradient checkpointing of the steps).
    """

    def __init__(self, steps=4, filters=96, blocks=2, components=32, heads=4, dropout=0.0,
                 attention=True, coupling="mixlogistic", context_channels=32, context_blocks=3,
                 pointwise=True, inverse="bisection", mixture_dtype="float32", rng=None,
                 **kwargs):
        super().__init__(**kwargs)
        rng = rng if rng is not None else np.random.default_rng()
        self.context_net = ContextNet(context_channels, context_blocks, dropout, rng=rng,
                                      name="context")
        self.context_channels = int(context_channels)
        self.steps = []
        for i in range(int(steps)):
            step = FlowPPStep(filters, blocks, components, heads, dropout, attention, coupling,
                              context_channels, pointwise, inverse, mixture_dtype, rng=rng,
                              name=f"step{i}")
            setattr(self, f"step{i}", step)
            self.steps.append(step)

    def build(self, image_shape):
        b, h, w, c = tuple(image_shape)
        self.image_shape = (h, w, c)
        self.context_net.build(image_shape)
        for step in self.steps:
            step.build((b, h, w // 2, c))
        self.built = True

    def context(self, image, training=False, seed=None):
        return self.context_net(image, training=training, seed=seed)

    def _context(self, image, context, training, seed):
        if context is None:
            if image is None:
                raise ValueError("the dequantizer needs image= (or context=)")
            context = self.context(image, training, None if seed is None else sub_seed(seed, 1))
        return context

    def forward(self, eps, image=None, context=None, training=False, seed=None,
                checkpoint=False):
        """eps [B, H, W, C] -> (u, log|du/deps| [B])."""
        context = self._context(image, context, training, seed)
        a, b = column_split(eps, "eps")
        a, b, logdet = run_pair_steps(self.steps, a, b, tf.zeros([tf.shape(eps)[0]], eps.dtype),
                                      context, training,
                                      None if seed is None else sub_seed(seed, 2), checkpoint)
        m = column_merge(a, b)
        # sigmoid's log-derivative: -softplus(m) - softplus(-m) (flows.py:242-246)
        logdet += sum_except_batch(-tf.nn.softplus(m) - tf.nn.softplus(-m))
        return tf.sigmoid(m), logdet

    def inverse(self, u, image=None, context=None, **unused):
        """u [B, H, W, C] in (0, 1) -> (eps, log|deps/du| [B])."""
        context = self._context(image, context, False, None)
        m = tf.math.log(u) - tf.math.log1p(-u)
        logdet = sum_except_batch(tf.nn.softplus(m) + tf.nn.softplus(-m))
        a, b = column_split(m, "u")
        a, b, logdet = inverse_pair_steps(self.steps, a, b, logdet, context)
        return column_merge(a, b), logdet

    def sample(self, image, noise=None, seed=None, training=False, checkpoint=False):
        """(u [B, H, W, C], log q(u|x) [B]); noise: eps ~ N(0, I), else drawn from seed."""
        if noise is None:
            eps_seed = sub_seed(seed, 0) if seed is not None else None
            noise = (tf.random.normal(tf.shape(image)) if eps_seed is None
                     else tf.random.stateless_normal(tf.shape(image), eps_seed))
        u, logdet = self.forward(noise, image=image, training=training, seed=seed,
                                 checkpoint=checkpoint)
        return u, standard_normal_logp(noise) - logdet


class UniformDequantizer(keras.layers.Layer):
    """u ~ U[0, 1), log q(u|x) = 0 (the uniform-dequantization ablation)."""

    def build(self, image_shape):
        self.built = True

    def sample(self, image, noise=None, seed=None, training=False, checkpoint=False):
        if noise is None:
            noise = (tf.random.uniform(tf.shape(image)) if seed is None
                     else tf.random.stateless_uniform(tf.shape(image), sub_seed(seed, 0)))
        return noise, tf.zeros([tf.shape(image)[0]], image.dtype)
