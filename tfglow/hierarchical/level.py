"""One level of the hierarchy (hflow network.py:1896-2089, `OneStep`, with its EncoderDecoder).

Level i works at resolution R_i on the latent y_i [B, R_i, R_i, c_i] (y_0 = 4 x, the image):

  encoder   features of R_i -> (y_{i+1} [R_{i+1}, c_{i+1}], features of R_{i+1}); one block per
            x1/2 (two for x1/4); the last level gives features only (the end block encodes them)
  decoder   y_{i+1} (or the end block's 4x4 tensor) -> the flow's conditioning
            cond_i = 1x1(h) [R_i, cond_channels], the start/end affine maps, and the skip
            features 1x1(h) [R_i, c_skip of level i-1] for the finer level's predictor
  flow      ConditionalFlow on y_i given cond_i and the affine maps (encoding: y_i -> z_i)

`checkpoint` (read at tracing): the encoder and decoder blocks and every flow step are
recomputed in the backward pass (step.recomputed); only their inputs and outputs are kept.
"""
import keras
import numpy as np

from tfglow.hierarchical.decoder import DecoderBlock
from tfglow.hierarchical.eqlr import EqConv2D
from tfglow.hierarchical.encoder import EncoderBlock
from tfglow.hierarchical.level_flow import ConditionalFlow
from tfglow.hierarchical.masks import parse_splits
from tfglow.hierarchical.step import recomputed


class Level(keras.layers.Layer):
    """Built from HierarchicalConfig `cfg` for level `i` (0 = the image)."""

    def __init__(self, cfg, i, rng, **kwargs):
        super().__init__(**kwargs)
        self.index = i
        last = i == cfg.n_levels - 1
        self.is_output, self.is_last = i == 0, last
        res, c = cfg.resolutions[i], cfg.channels[i]
        res_next = cfg.resolutions[i + 1] if not last else min(4, res // 2)
        n = int(np.log2(res // res_next))
        c_in = cfg.n_channels if i == 0 else cfg.encoder_channels[i - 1]
        ench, dech = cfg.encoder_channels[i], cfg.decoder_channels[i]
        z_c = cfg.channels[i + 1] if not last else cfg.end_channels
        enc = dict(kernel=cfg.kernel, lr_mul=cfg.encoder_lr_scale, antialias=not last, rng=rng)
        # Encoder blocks, finest first (the code's components of EncoderDecoder).
        if n == 2:
            self.encoders = [
                EncoderBlock(res, c_in, ench, c_latent=ench, mid=False, name="enc0", **enc),
                EncoderBlock(res // 2, ench, ench, c_latent=None if last else z_c, mid=True,
                             name="enc1", **enc)]
        else:
            self.encoders = [EncoderBlock(res, c_in, ench, c_latent=None if last else z_c,
                                          mid=True, name="enc0", **enc)]
        style = cfg.global_channels if cfg.decoder_style[i] else 0
        dec = dict(norm=cfg.decoder_norm[i], lr_mul=cfg.decoder_lr_scale, rng=rng,
                   style_channels=style)
        top = dict(c_out=c, residuals=True, refine_unet=cfg.decoder_unet[i])
        low = dict(predictor=not last, c_skip=cfg.skip_channels[i])
        # Decoder blocks, coarsest first (the order of decoding).
        if n == 2:
            self.decoders = [DecoderBlock(res // 2, z_c, dech, name="dec1", **low, **dec),
                             DecoderBlock(res, dech, dech, name="dec0", **top, **dec)]
        else:
            self.decoders = [DecoderBlock(res, z_c, dech, name="dec0", **low, **top, **dec)]
        self.cond_proj = EqConv2D(dech, cfg.cond_channels[i], 1, nonlin="linear",
                                  name="learned_upscaler_cond", rng=rng)
        self.skip_proj = None if i == 0 else EqConv2D(
            dech, cfg.skip_channels[i - 1], 1, lr_mul=cfg.decoder_lr_scale, nonlin="linear",
            name="skip_to_next", rng=rng)
        self.flow = ConditionalFlow(
            c, res, cfg.coupling_channels[i], parse_splits(cfg.splits[i], cfg.num_layers[i]),
            cond_channels=cfg.cond_channels[i], kernel=cfg.coupling_kernel,
            unitary=cfg.unitary[i], permute_scaling=cfg.permute_scaling[i],
            unet_downscales=cfg.unet_downscales[i], unet_mult=cfg.unet_mult[i],
            unet_double=cfg.unet_double[i], rng=rng, name="flow")
        self.checkpoint = False
        self.built = True

    @property
    def checkpoint(self):
        return self._checkpoint

    @checkpoint.setter
    def checkpoint(self, on):
        self._checkpoint = self.flow.checkpoint = bool(on)

    def encode_features(self, h):
        """features [B, R_i, R_i, .] -> (y_{i+1} or None, features of the next level)."""
        if self.checkpoint:
            return recomputed(self._encode, h)
        return self._encode(h)

    def condition(self, coarse, g=None, skip=None):
        """Decoder: coarse input -> (affine maps, cond [B, R_i, R_i, cond_c], skip or None)."""
        if self.checkpoint:
            return recomputed(self._condition, coarse, g, skip)
        return self._condition(coarse, g, skip)

    def _encode(self, h):
        latent = mid = None
        for block in self.encoders:
            latent, mid = block(h)
            h = latent
        return latent, mid

    def _condition(self, coarse, g, skip):
        h = coarse
        for block in self.decoders[:-1]:
            h, _ = block(h, g, skip)
        affine, raw = self.decoders[-1](h, g, skip)
        return affine, self.cond_proj(raw), (None if self.skip_proj is None
                                             else self.skip_proj(raw))
