"""The conditioning network of a Flow++ coupling (Flow++ section 3.2.2; flows.py:26-161, 479-499).

    h = conv3x3(x_1) -> F channels                                  proj_in
    for each of `blocks` blocks (pos_emb [H, W, F] shared by the blocks of one coupling):
        h = LayerNorm(GatedConv(h, context))                        flows.py:115-127
        h = LayerNorm(GatedAttention(h + pos_emb))                  flows.py:130-161
    out = conv3x3(h) -> n_out channels, init scale 0.1              proj_out

GatedConv(x, a):   c = conv3x3(concat_elu(x))  [+ nin(concat_elu(a)) for a context a]
                   c = dropout(concat_elu(c));  x + GLU(nin(c) -> 2F)   (nin init scale 0.1)
GatedAttention(x): q, k, v = split(nin(x + pos_emb) -> 3F), `heads` heads of F/heads each;
                   c = dropout(softmax(q k^T / sqrt(F/heads)) v over all H*W positions);
                   x + GLU(nin(c) -> 2F)  (init scale 0.1). Only these two projections, as the
                   official code (Keras' MultiHeadAttention has four and would add parameters).
The no-attention ablation (abl_noattn.py:19-33) replaces the attention by a max over three
channel groups of the same projection ("gated nin"): same parameter count.

Convolutions and 1x1s ("nin"): W ~ N(0, 0.05), b = 0, SAME padding. Data-dependent init (inside
tfglow.actnorm.data_dependent_init; flows.py:26-66): from the first batch, y = conv(x, W),
scale = init_scale / sqrt(var(y) + 1e-8), W <- W * scale, b <- -mean(y) * scale, so each output
channel starts with mean 0 and std init_scale. The CIFAR code has no weight normalization,
although the paper says it does (the ImageNet launchers use it); we follow the CIFAR code.
Dropout is stateless (a [2] int seed per call) so that recomputing a step for gradient
checkpointing draws the same masks.

The layers compute in their input's dtype (`NetLayer`: no Keras autocast, variables cast to the
input's dtype), so the model's exact encode/decode can run the whole flow in float64 with the
float32 weights; in float32 the casts are no-ops.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow import replica_noise
from tfglow.actnorm import ddi_active, ddi_mean_fn
from tfglow.conv import conv2d_same_flat, unflat
from tfglow.flow import constant_initializer


def concat_elu(x):
    """elu([x, -x]) on the channel axis: [..., C] -> [..., 2C]."""
    return tf.nn.elu(tf.concat([x, -x], axis=-1))


def gate(x):
    """GLU: a * sigmoid(b) of the two channel halves [..., 2C] -> [..., C]."""
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


def sub_seed(seed, index):
    """A distinct stateless seed [2] per (seed, index)."""
    return tf.random.experimental.stateless_fold_in(seed, index)


class NetLayer(keras.layers.Layer):
    """A Keras layer that computes in its input's dtype: Keras would cast float64 inputs to the
    float32 compute dtype, and the exact float64 encode/decode needs them kept."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)


def as_dtype_of(variable, x):
    """The variable's value in x's dtype (a no-op when they match)."""
    return tf.cast(variable, x.dtype)


def dropout(x, rate, seed, index, training):
    """Inverted dropout with a stateless mask (seed [2] int), identity unless training.

    Inside tfglow.replica_noise.replica_batch (the trainer's step) the mask is this
    replica's rows of the global batch's mask, so replicas change no mask."""
    if not training or rate <= 0.0:
        return x
    if seed is None:
        raise ValueError("dropout in training needs a seed [2] (pass seed=...)")
    seed = sub_seed(seed, index)
    if replica_noise.active():
        u = replica_noise.rows(
            lambda shape, s: tf.random.stateless_uniform(shape, s, dtype=x.dtype), tf.shape(x),
            seed)
        return x * tf.cast(u >= rate, x.dtype) * (1.0 / (1.0 - rate))
    return tf.nn.experimental.stateless_dropout(x, rate, seed=seed)


class InitConv(NetLayer):
    """kxk SAME convolution (k=1: "nin") with the official N(0, 0.05) init and its
    data-dependent init (module docstring). x [B, H, W, C] -> [B, H, W, filters]."""

    def __init__(self, filters, kernel_size=3, init_scale=1.0, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.init_scale = float(init_scale)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        k, c = self.kernel_size, int(input_shape[-1])
        w = self._rng.normal(0.0, 0.05, size=(k, k, c, self.filters)).astype(np.float32)
        self.kernel = self.add_weight(shape=w.shape, name="W", initializer=constant_initializer(w))
        self.bias = self.add_weight(shape=(self.filters,), name="b", initializer="zeros")
        self.built = True

    def _conv_flat(self, x, kernel):
        if self.kernel_size == 1:
            return tf.matmul(tf.reshape(x, [-1, int(x.shape[-1])]), kernel[0, 0])
        return conv2d_same_flat(x, kernel)

    def initialize_from(self, x):
        y = self._conv_flat(x, self.kernel)
        mean_fn = ddi_mean_fn()
        mean = mean_fn(tf.reduce_mean(y, axis=0))
        var = mean_fn(tf.reduce_mean(tf.square(y - mean), axis=0))
        scale = self.init_scale * tf.math.rsqrt(var + 1e-8)
        self.kernel.assign(self.kernel * scale)
        self.bias.assign(-mean * scale)

    def call(self, x):
        if ddi_active():
            self.initialize_from(x)
        y = self._conv_flat(x, as_dtype_of(self.kernel, x)) + as_dtype_of(self.bias, x)
        return unflat(y, x, self.filters)


class LayerNorm(NetLayer):
    """Layer norm over channels, eps 1e-5, gain and bias [C] (flows.py:104-112)."""

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.g = self.add_weight(shape=(c,), initializer="ones", name="g")
        self.b = self.add_weight(shape=(c,), initializer="zeros", name="b")
        self.built = True

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        g, b = as_dtype_of(self.g, x), as_dtype_of(self.b, x)
        return (x - mean) * tf.math.rsqrt(var + 1e-5) * g + b


class GatedConv(NetLayer):
    """Gated residual convolution (flows.py:115-127); see the module docstring.

    use_nin: the second convolution is a 1x1 (couplings) or a 3x3 (the dequantizer's context
    network). context_channels > 0 adds the 1x1 projection of concat_elu(context).
    """

    def __init__(self, context_channels=0, use_nin=True, dropout=0.0, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.context_channels = int(context_channels)
        self.use_nin, self.rate = bool(use_nin), float(dropout)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        shape = tuple(input_shape)
        f = int(shape[-1])
        self.c1 = InitConv(f, 3, rng=self._rng, name="c1")
        self.c1.build(shape[:-1] + (2 * f,))
        self.a_proj = None
        if self.context_channels:
            self.a_proj = InitConv(f, 1, rng=self._rng, name="a_proj")
            self.a_proj.build(shape[:-1] + (2 * self.context_channels,))
        self.c2 = InitConv(2 * f, 1 if self.use_nin else 3, init_scale=0.1, rng=self._rng,
                           name="c2")
        self.c2.build(shape[:-1] + (2 * f,))
        self.built = True

    def call(self, x, context=None, training=False, seed=None):
        c = self.c1(concat_elu(x))
        if self.a_proj is not None:
            c = c + self.a_proj(concat_elu(context))
        c = dropout(concat_elu(c), self.rate, seed, 0, training)
        return x + gate(self.c2(c))


def multihead_attention(qkv, heads):
    """qkv [B, H, W, 3F] -> softmax(q k^T / sqrt(d)) v [B, H, W, F], d = F / heads, over all
    H*W positions; channels of qkv ordered (q/k/v, head, d) as the official reshape."""
    h, w, f3 = (int(s) for s in qkv.shape[1:])
    f, t = f3 // 3, h * w
    dim = f // heads
    c = tf.transpose(tf.reshape(qkv, [-1, t, 3, heads, dim]), [2, 0, 3, 1, 4])
    q, k, v = tf.unstack(c, num=3, axis=0)                       # [B, heads, T, d] each
    weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / np.sqrt(float(dim)))
    out = tf.matmul(weights, v)                                  # [B, heads, T, d]
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, h, w, f])


class GatedAttention(NetLayer):
    """Gated multi-head self-attention with a positional embedding (flows.py:130-161).

    attention=False: the no-attention ablation's gated nin (abl_noattn.py:19-33).
    """

    def __init__(self, heads=4, dropout=0.0, attention=True, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.rate, self.attention = int(heads), float(dropout), bool(attention)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        shape = tuple(input_shape)
        f = int(shape[-1])
        if f % self.heads:
            raise ValueError(f"filters={f} must be divisible by heads={self.heads}")
        self.proj1 = InitConv(3 * f, 1, rng=self._rng, name="proj1")
        self.proj1.build(shape)
        self.proj2 = InitConv(2 * f, 1, init_scale=0.1, rng=self._rng, name="proj2")
        self.proj2.build(shape)
        self.built = True

    def call(self, x, pos_emb, training=False, seed=None):
        c = self.proj1(x + pos_emb)
        if self.attention:
            c = multihead_attention(c, self.heads)
        else:  # max over 3 consecutive channels, as the ablation's reshape [.., F, 3]
            f = int(x.shape[-1])
            c = tf.reduce_max(tf.reshape(c, [-1, *x.shape[1:3], f, 3]), axis=-1)
        c = dropout(c, self.rate, seed, 1, training)
        return x + gate(self.proj2(c))


class Block(NetLayer):
    """One conditioner block: LayerNorm(GatedConv) then LayerNorm(GatedAttention)."""

    def __init__(self, heads=4, dropout=0.0, attention=True, context_channels=0, rng=None,
                 **kwargs):
        super().__init__(**kwargs)
        rng = rng if rng is not None else np.random.default_rng()
        self.conv = GatedConv(context_channels, True, dropout, rng=rng, name="conv")
        self.ln1 = LayerNorm(name="ln1")
        self.attn = GatedAttention(heads, dropout, attention, rng=rng, name="attn")
        self.ln2 = LayerNorm(name="ln2")

    def build(self, input_shape):
        for layer in (self.conv, self.ln1, self.attn, self.ln2):
            layer.build(tuple(input_shape))
        self.built = True

    def call(self, h, pos_emb, context=None, training=False, seed=None):
        s1 = None if seed is None else sub_seed(seed, 0)
        s2 = None if seed is None else sub_seed(seed, 1)
        h = self.ln1(self.conv(h, context=context, training=training, seed=s1))
        return self.ln2(self.attn(h, pos_emb, training=training, seed=s2))


class Conditioner(NetLayer):
    """x_1 [B, H, W, C] (and context [B, H, W, C_ctx]) -> [B, H, W, n_out]; module docstring."""

    def __init__(self, n_out, filters=96, blocks=10, heads=4, dropout=0.0, attention=True,
                 context_channels=0, init_scale_out=0.1, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.n_out, self.filters, self.n_blocks = int(n_out), int(filters), int(blocks)
        self.heads, self.rate, self.attention = int(heads), float(dropout), bool(attention)
        self.context_channels = int(context_channels)
        self.init_scale_out = float(init_scale_out)
        self._rng = rng if rng is not None else np.random.default_rng()

    def build(self, input_shape):
        b, h, w, _ = tuple(input_shape)
        f, rng = self.filters, self._rng
        pos = rng.normal(0.0, 0.01, size=(h, w, f)).astype(np.float32)
        self.pos_emb = self.add_weight(shape=pos.shape, name="pos_emb",
                                       initializer=constant_initializer(pos))
        self.proj_in = InitConv(f, 3, rng=rng, name="proj_in")
        self.proj_in.build(tuple(input_shape))
        hidden = (b, h, w, f)
        self.blocks = []
        for i in range(self.n_blocks):
            block = Block(self.heads, self.rate, self.attention, self.context_channels, rng=rng,
                          name=f"block{i}")
            block.build(hidden)
            setattr(self, f"block{i}", block)  # named attributes: seen by tf.train.Checkpoint
            self.blocks.append(block)
        self.proj_out = InitConv(self.n_out, 3, init_scale=self.init_scale_out, rng=rng,
                                 name="proj_out")
        self.proj_out.build(hidden)
        self.built = True

    def call(self, x, context=None, training=False, seed=None):
        h = self.proj_in(x)
        for i, block in enumerate(self.blocks):
            s = None if seed is None else sub_seed(seed, i)
            h = block(h, as_dtype_of(self.pos_emb, h), context=context, training=training,
                      seed=s)
        return self.proj_out(h)
