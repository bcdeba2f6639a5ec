"""HierarchicalConfig: every hyperparameter of the hierarchical model, and presets.

Per-level tuples have one entry per level i = 0 .. L-1 (level 0 = the image, R_0 = image_size);
the 1x1 end block has its own fields. `flow_noise` and `decoder_noise` have one entry per latent
y_1 .. y_{L-1} (the image gets no noise). Constraints of the code: the lowest level is 8x8,
consecutive resolutions differ by x2 or x4, S_k splits need multiples of 2k pixels.

Presets (`HierarchicalConfig.preset(name, **overrides)`):
  celebahq256  the paper's Config A as hflow's preset_configs/config_A_256.json builds it:
               R = [256, 128, 32, 8] + 1x1 (4 + 508), K = [4, 8, 8, 8] + [8, 8].
               Trainable parameters, from the variables' shapes: 77,381,708. hflow's count
               (model.py:164, sum of numel over parameters()) also counts its split masks,
               stored as frozen torch Parameters (two [C, R, R] per coupling; [C] at 1x1; and
               the end block's two 512 masks): 2,769,920 more, 80,151,628 in all = the paper's
               "80.15 M" (Table 2). Its 128 px variant (R = [128, 64, 32, 8]) gives 73,775,436 +
               803,840 = 74,579,276 = the paper's "74.58 M" (Table 3).
               `HierarchicalFlow.hflow_parameter_count()` gives hflow's way of counting.
  cpu32        32x32: R = [32, 16, 8], K = [4, 4, 4] + [4, 4], widths 16-64, E = 64
  cpu16        16x16: R = [16, 8], K = [2, 2] + [2, 2], widths 8-32, E = 32 (the unit tests')
  digits16     cpu16 with one channel (the 8x8 digits padded to 16x16); spatial splits at 16 px
"""
import dataclasses

import numpy as np

from tfglow.hierarchical.masks import SPLIT_BLOCK, parse_splits

PER_LEVEL = ("channels", "num_layers", "splits", "skip_channels", "loss_weights",
             "encoder_channels", "decoder_channels", "coupling_channels", "unet_mult",
             "unet_downscales", "unet_double", "permute_scaling", "unitary", "cond_channels",
             "decoder_style", "decoder_norm", "decoder_unet")


@dataclasses.dataclass(frozen=True)
class HierarchicalConfig:
    """Defaults: Config A (CelebA-HQ 256) as hflow's config_A_256.json."""

    image_size: int = 256
    n_channels: int = 3
    resolutions: tuple = (256, 128, 32, 8)
    channels: tuple = (3, 4, 8, 8)
    num_layers: tuple = (4, 8, 8, 8)                  # K: flow steps per level
    splits: tuple = ("2C,2S2", "2C,2S2,2S4,2S8", "2C,2S2,2S4,2S8", "8C")  # from the input side
    skip_channels: tuple = (8, 32, 32, 32)            # predictor skip features into level i
    loss_weights: tuple = (1.0, 10.0, 10.0, 1.0)
    encoder_channels: tuple = (64, 256, 256, 256)
    decoder_channels: tuple = (64, 256, 512, 512)
    kernel: int = 3                                   # encoder/decoder kernels
    coupling_channels: tuple = (32, 64, 128, 128)
    coupling_kernel: int = 3
    unet_mult: tuple = (1.1, 1.2, 1.2, 1.2)           # coupling U-Net width multiplier
    unet_downscales: tuple = (2, 2, 1, 1)
    unet_double: tuple = (True, True, False, False)   # x1/4 per U-Net level ("double")
    permute_scaling: tuple = (0.3, 0.3, 0.3, 0.3)     # M of the free-form 1x1
    unitary: tuple = (False, False, False, False)
    cond_channels: tuple = (16, 32, 64, 128)          # conditioning channels of each flow
    decoder_style: tuple = (False, False, False, True)
    decoder_norm: tuple = (False, False, False, True)
    decoder_unet: tuple = (False, True, True, True)   # U-Net refinement of start/end biases
    flow_noise: tuple = (0.4, 0.4, 0.05)              # alpha of the flow targets y_1 .. y_{L-1}
    decoder_noise: tuple = (0.4, 0.4, 0.05)           # alpha of the decoder inputs (training)
    end_channels: int = 512                           # E: the 1x1 latent
    prior_channels: int = 4                           # P: y_prior
    end_layers: tuple = (8, 8)
    end_hidden: tuple = (64, 512)
    end_cond_channels: int = 32
    end_flow_noise: tuple = (0.05, 0.05)              # y_prior, y_1
    end_decoder_noise: tuple = (0.075, 0.075)         # 0.05 x STYLE_REL_NOISE_SCALE 1.5
    end_permute_scaling: float = 0.1
    end_unitary: bool = True
    end_base_visible: bool = False                    # hflow masks t from the base path
    global_channels: int = 512                        # style MLP width
    mapping_lr: float = 0.2
    encoder_lr_scale: float = 10.0
    decoder_lr_scale: float = 10.0
    init_scale: float = 4.0                           # the model works on 4 x (network.py:1524)
    data_noise_std: float = 0.005                     # training augmentation (dataloader.py:113)
    seed: int = 0

    def __post_init__(self):
        for name in PER_LEVEL + ("resolutions", "flow_noise", "decoder_noise", "end_layers",
                                 "end_hidden", "end_flow_noise", "end_decoder_noise"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        n = len(self.resolutions)
        if n < 1:
            raise ValueError("resolutions must not be empty")
        for name in PER_LEVEL:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries; resolutions "
                                 f"has {n} levels")
        for name in ("flow_noise", "decoder_noise"):
            if len(getattr(self, name)) != n - 1:
                raise ValueError(f"{name} needs one alpha per latent below the image ({n - 1}); "
                                 f"got {len(getattr(self, name))}")
            if any(a < 0 for a in getattr(self, name)):
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.resolutions[0] != self.image_size:
            raise ValueError(f"resolutions[0]={self.resolutions[0]} must equal image_size="
                             f"{self.image_size}")
        if self.channels[0] != self.n_channels:
            raise ValueError(f"channels[0]={self.channels[0]} must equal n_channels="
                             f"{self.n_channels}")
        if self.resolutions[-1] != 8:
            raise ValueError(f"the lowest level must be 8x8 (as hflow); resolutions="
                             f"{self.resolutions}")
        for a, b in zip(self.resolutions, self.resolutions[1:]):
            if a not in (2 * b, 4 * b):
                raise ValueError(f"resolutions {self.resolutions}: consecutive levels must "
                                 "differ by x2 or x4")
        for i in range(n):
            steps = parse_splits(self.splits[i], self.num_layers[i])
            for s in steps:
                if s in SPLIT_BLOCK and self.resolutions[i] % (2 * SPLIT_BLOCK[s]):
                    raise ValueError(f"splits[{i}]={self.splits[i]!r}: {s} needs a multiple of "
                                     f"{2 * SPLIT_BLOCK[s]} px; level {i} is "
                                     f"{self.resolutions[i]} px")
                if s == "C" and self.channels[i] < 2:
                    raise ValueError(f"splits[{i}]={self.splits[i]!r}: a C split needs >= 2 "
                                     f"channels; level {i} has {self.channels[i]}")
            if self.coupling_channels[i] % 2:
                raise ValueError(f"coupling_channels[{i}] must be even")
        if not 0 < self.prior_channels < self.end_channels:
            raise ValueError(f"prior_channels={self.prior_channels} must be in (0, end_channels="
                             f"{self.end_channels})")
        if len(self.end_layers) != 2 or len(self.end_hidden) != 2:
            raise ValueError("end_layers and end_hidden need 2 entries (y_prior, y_1)")
        if min(self.prior_channels, self.end_channels - self.prior_channels) < 2:
            raise ValueError("the end block's C splits need >= 2 channels in y_prior and y_1")

    # ----------------------------------------------------------------- derived
    @property
    def n_levels(self):
        return len(self.resolutions)

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.n_channels)

    @property
    def n_dims(self):
        return int(np.prod(self.image_shape))

    @property
    def latent_shapes(self):
        """One per latent of encode: the levels' (R_i, R_i, c_i), then the end (1, 1, E)."""
        return tuple((r, r, c) for r, c in zip(self.resolutions, self.channels)) + (
            (1, 1, self.end_channels),)

    @property
    def latent_dims(self):
        """|y| of the paper (its Config A: 271,360)."""
        return int(sum(np.prod(s) for s in self.latent_shapes))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"HierarchicalConfig.from_dict: unknown fields {unknown}")
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown hierarchical preset {name!r}; choose from "
                             f"{sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


_CPU16 = dict(
    image_size=16, resolutions=(16, 8), channels=(3, 4), num_layers=(2, 2),
    splits=("C,S2", "2C"), skip_channels=(8, 8), loss_weights=(1.0, 1.0),
    encoder_channels=(16, 16), decoder_channels=(16, 32), coupling_channels=(8, 16),
    unet_mult=(1.2, 1.2), unet_downscales=(1, 1), unet_double=(False, False),
    permute_scaling=(0.3, 0.3), unitary=(False, False), cond_channels=(8, 8),
    decoder_style=(False, True), decoder_norm=(False, True), decoder_unet=(False, True),
    flow_noise=(0.05,), decoder_noise=(0.05,), end_channels=32, end_layers=(2, 2),
    end_hidden=(16, 32), end_cond_channels=8, global_channels=32)

PRESETS = {
    "celebahq256": dict(),
    "cpu32": dict(
        image_size=32, resolutions=(32, 16, 8), channels=(3, 4, 8), num_layers=(4, 4, 4),
        splits=("2C,2S2", "C,S2,S4,S8", "4C"), skip_channels=(8, 16, 16),
        loss_weights=(1.0, 10.0, 1.0), encoder_channels=(16, 32, 32),
        decoder_channels=(16, 32, 64), coupling_channels=(16, 32, 32),
        unet_mult=(1.2, 1.2, 1.2), unet_downscales=(1, 1, 1), unet_double=(False,) * 3,
        permute_scaling=(0.3,) * 3, unitary=(False,) * 3, cond_channels=(8, 16, 32),
        decoder_style=(False, False, True), decoder_norm=(False, False, True),
        decoder_unet=(False, True, True), flow_noise=(0.4, 0.05), decoder_noise=(0.4, 0.05),
        end_channels=64, end_layers=(4, 4), end_hidden=(16, 64), end_cond_channels=16,
        global_channels=64),
    "cpu16": _CPU16,
    "digits16": dict(_CPU16, n_channels=1, channels=(1, 4), splits=("2S2", "2C")),
}
