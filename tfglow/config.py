"""GlowConfig: the model's hyper-parameters, named as the original release's flags.

Presets carry the paper's configurations (Glow Table 2 and section 6, and the commands of
the original README). Field names are the original `train.py` flags; the two additions are
`n_channels` (the original hard-codes 3) and `flow_permutation=3` (the LU-decomposed 1x1
convolution of paper eq. 10-11, which the original has only behind an `if True:`).
"""
import dataclasses

#: flow_permutation values, as the original (0-2) plus our LU option (3).
PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "invconv", 3: "invconv_lu"}
#: flow_coupling values, as the original.
COUPLINGS = {0: "additive", 1: "affine"}


@dataclasses.dataclass(frozen=True)
class GlowConfig:
    """Model hyper-parameters. Defaults are the original `train.py` defaults.

    image_size: H = W of the input images; must be divisible by 2**n_levels.
    n_levels: L, levels of the multi-scale architecture (one squeeze each).
    depth: K, flow steps per level.
    width: hidden channels of the coupling networks.
    flow_permutation: 0 reverse, 1 shuffle, 2 invertible 1x1 conv, 3 LU 1x1 conv.
    flow_coupling: 0 additive, 1 affine.
    learntop: learn the top prior's mean and log-scale (conv2d_zeros on zeros).
    ycond: class-conditional top prior (and classifier loss when weight_y > 0).
    n_y: number of classes (labels are ints in [0, n_y)).
    n_bits_x: bits per colour channel the model sees (8, or 5 for CelebA-HQ).
    weight_y: weight of the classifier loss in bits (needs ycond).
    n_channels: C of the input images (3 in the original).
    seed: seed of the random initial weights (rotations, shuffles, N(0, 0.05)).
    """

    image_size: int = 32
    n_levels: int = 3
    depth: int = 32
    width: int = 512
    flow_permutation: int = 2
    flow_coupling: int = 0
    learntop: bool = False
    ycond: bool = False
    n_y: int = 10
    n_bits_x: int = 8
    weight_y: float = 0.0
    n_channels: int = 3
    seed: int = 0

    def __post_init__(self):
        _check_positive_int(self, "image_size", "n_levels", "depth", "width", "n_y", "n_channels")
        if self.image_size % (2 ** self.n_levels):
            raise ValueError(
                f"GlowConfig.image_size={self.image_size} must be divisible by "
                f"2**n_levels={2 ** self.n_levels} (one squeeze per level)")
        if self.flow_permutation not in PERMUTATIONS:
            raise ValueError(f"GlowConfig.flow_permutation={self.flow_permutation!r} must be one of "
                             f"{sorted(PERMUTATIONS)} ({PERMUTATIONS})")
        if self.flow_coupling not in COUPLINGS:
            raise ValueError(f"GlowConfig.flow_coupling={self.flow_coupling!r} must be one of "
                             f"{sorted(COUPLINGS)} ({COUPLINGS})")
        if not 1 <= self.n_bits_x <= 8:
            raise ValueError(f"GlowConfig.n_bits_x={self.n_bits_x!r} must be in 1..8")
        if self.weight_y < 0:
            raise ValueError(f"GlowConfig.weight_y={self.weight_y!r} must be >= 0")
        if self.weight_y > 0 and not self.ycond:
            # The original silently ignored weight_y without ycond; we say so instead.
            raise ValueError("GlowConfig.weight_y > 0 needs ycond=True (the classifier reads "
                             "the class-conditional top latent)")

    @property
    def n_bins(self):
        """Number of intensity bins, 2**n_bits_x."""
        return 2 ** self.n_bits_x

    @property
    def image_shape(self):
        """(H, W, C) of the input images."""
        return (self.image_size, self.image_size, self.n_channels)

    @property
    def n_dims(self):
        """D = H * W * C, the dimension bits/dim is normalised by."""
        return self.image_size * self.image_size * self.n_channels

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"GlowConfig.from_dict: unknown fields {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides):
        """The paper's configuration `name` (see PRESETS), with optional overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown GlowConfig preset {name!r}; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def _check_positive_int(cfg, *names):
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"GlowConfig.{name}={value!r} must be a positive integer")


_PAPER = dict(width=512, flow_permutation=2, learntop=True)

#: The paper's runs (original README commands; Glow Table 2 and section 6).
PRESETS = {
    # CIFAR-10 quantitative result: 3.35 bits/dim.
    "cifar10": dict(_PAPER, image_size=32, n_levels=3, depth=32, flow_coupling=1, n_y=10),
    # Conditional CIFAR-10 (qualitative): additive, 5-bit, class-conditional prior.
    "cifar10_ycond": dict(_PAPER, image_size=32, n_levels=3, depth=32, flow_coupling=0, n_y=10,
                          n_bits_x=5, ycond=True, weight_y=0.01),
    # Downsampled ImageNet (imagenet-oord): 4.09 and 3.81 bits/dim.
    "imagenet32": dict(_PAPER, image_size=32, n_levels=3, depth=48, flow_coupling=1, n_y=1000),
    "imagenet64": dict(_PAPER, image_size=64, n_levels=4, depth=48, flow_coupling=1, n_y=1000),
    # LSUN 64x64 (random crops of 96x96, RealNVP protocol): 2.38 / 2.46 / 2.67 bits/dim.
    "lsun": dict(_PAPER, image_size=64, n_levels=3, depth=48, flow_coupling=1, n_y=1),
    # CelebA-HQ 256x256, 5-bit, additive (qualitative; 1.03 bits/dim).
    "celeba": dict(_PAPER, image_size=256, n_levels=6, depth=32, flow_coupling=0, n_y=1,
                   n_bits_x=5),
    # MNIST is not in the paper: the original's flag defaults at 32x32x3 (padded, tiled).
    "mnist": dict(image_size=32, n_levels=3, depth=32, width=512, flow_permutation=2,
                  flow_coupling=0, n_y=10),
    # Embedded default: scikit-learn's 8x8 grayscale digits, small enough for a CPU.
    "digits": dict(image_size=8, n_channels=1, n_levels=2, depth=8, width=64, flow_permutation=2,
                   flow_coupling=1, learntop=True, n_y=10),
}
