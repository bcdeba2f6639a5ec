"""The end block: the 1x1 latent (hflow network.py:1337-1482 PartitionedEndblock, :1560-1605).

Encoder: two blocks 4 -> 2 -> 1 (average pooling, the second with 1x1 kernels) from the last
level's features to the vector t [B, 1, 1, E] (E = 512 in hflow), split into y_prior (first P = 4
channels) and y_1 (the rest, E - P = 508; the paper's "408" is a typo).

Flows (1x1, unitary 1x1 convolutions, channel splits, no start/end affine maps):
    z_prior = f_prior(y_prior)                         (unconditional)
    z_1 = f_1(y_1; 1x1(y_prior))                       (conditioned on y_prior)
Decoder side, from t:
    g = MLP(t with y_prior zeroed)                     6 dense leaky-ReLU layers (GlobalStateNetwork,
                                                       learning rate x0.2): the style vector
    base = tile(1x1(t * base_mask), 4x4) + const       [B, 4, 4, E]: the last level's decoder input.
hflow's config masks all of t from the base path (MASK_FOR_BASE_IND [0, 512]), so the base is a
learned constant and t reaches the images only through the style vector; `base_visible=True`
lets the base path see t.
"""
import keras
import numpy as np
import tensorflow as tf

from tfglow.flow import constant_initializer
from tfglow.hierarchical.eqlr import EqConv2D, eq_dense
from tfglow.hierarchical.encoder import EncoderBlock
from tfglow.hierarchical.level_flow import ConditionalFlow


class StyleNetwork(keras.layers.Layer):
    """[B, 1, 1, E] -> [B, H] (GlobalStateNetwork, network.py:866-888)."""

    def __init__(self, c_in, hidden, lr_mul=0.2, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.fcs = [eq_dense(c_in if j == 0 else hidden, hidden, lr_mul=lr_mul, rng=rng,
                             name=f"fc{j}") for j in range(6)]
        self.built = True

    def call(self, t):
        for fc in self.fcs:
            t = fc(t)
        return t[:, 0, 0, :]


class EndBlock(keras.layers.Layer):
    def __init__(self, cfg, rng, **kwargs):
        super().__init__(**kwargs)
        e, p = cfg.end_channels, cfg.prior_channels
        self.prior_channels, self.end_channels = p, e
        self.base_visible = cfg.end_base_visible
        enc = dict(antialias=False, kernel=cfg.kernel, lr_mul=cfg.encoder_lr_scale, rng=rng)
        self.encoders = [
            EncoderBlock(4, cfg.encoder_channels[-1], e, c_latent=e, mid=False, name="enc0", **enc),
            EncoderBlock(2, e, e, c_latent=None, mid=True, name="enc1", **enc)]
        flow = dict(kernel=1, unitary=cfg.end_unitary, permute_scaling=cfg.end_permute_scaling,
                    rng=rng)
        self.prior_flow = ConditionalFlow(p, 1, cfg.end_hidden[0], ["C"] * cfg.end_layers[0],
                                          name="prior_flow", **flow)
        self.rest_flow = ConditionalFlow(e - p, 1, cfg.end_hidden[1], ["C"] * cfg.end_layers[1],
                                         cond_channels=cfg.end_cond_channels, name="rest_flow",
                                         **flow)
        self.cond_encoder = EqConv2D(p, cfg.end_cond_channels, 1, nonlin="linear", rng=rng,
                                     name="cond_encoder")
        self.style = (StyleNetwork(e, cfg.global_channels, cfg.mapping_lr, rng=rng, name="style")
                      if any(cfg.decoder_style) else None)
        self.split_conv = EqConv2D(e, e, 1, nonlin="linear", rng=rng, name="endblock_split_conv")
        const = rng.standard_normal((4, 4, e), dtype=np.float32)
        self.conv_d_const = self.add_weight(shape=const.shape, name="conv_d_const",
                                            initializer=constant_initializer(const))
        self.built = True

    def encode_features(self, h):
        """Last level's features [B, 4, 4, C] -> t [B, 1, 1, E]."""
        latent, _ = self.encoders[0](h)
        return self.encoders[1](latent)[1]

    def split(self, t):
        return t[..., :self.prior_channels], t[..., self.prior_channels:]

    def flows_forward(self, prior, rest, cond_source):
        """(y_prior, y_1, the y_prior conditioning y_1) -> (z_prior, z_1, ldj_prior, ldj_1)."""
        zp, ldp = self.prior_flow.forward(prior)
        zr, ldr = self.rest_flow.forward(rest, cond=self.cond_encoder(cond_source))
        return zp, zr, ldp, ldr

    def flows_inverse(self, zp, zr):
        prior, _ = self.prior_flow.inverse(zp)
        rest, _ = self.rest_flow.inverse(zr, cond=self.cond_encoder(prior))
        return prior, rest

    def decoder_inputs(self, t):
        """t [B, 1, 1, E] -> (style vector [B, H] or None, base [B, 4, 4, E])."""
        p = self.prior_channels
        g = None
        if self.style is not None:
            g = self.style(tf.concat([tf.zeros_like(t[..., :p]), t[..., p:]], -1))
        base = self.split_conv(t if self.base_visible else tf.zeros_like(t))
        return g, tf.tile(base, [1, 4, 4, 1]) + tf.cast(self.conv_d_const, t.dtype)
