"""FlowPPConfig: every hyperparameter of a Flow++ model, and the presets of the official runs.

Layout: `stages` is a sequence of "column:K" (column split, K steps, merge), "channel:K"
(channel split, K steps, merge) and "squeeze" (tf.nn.space_to_depth). There is no factoring
out: the latent has the shape of the last stage's input.

Presets (`FlowPPConfig.preset(name, **overrides)`):
  cifar10                  run_cifar.py: 31,443,440 parameters, 3.08 bits/dim (IW) in the paper
  cifar10_uniform_dequant  abl_nodequant.py: uniform dequantization, F = 104 (32,324,408)
  cifar10_affine           abl_nomixlog.py: affine coupling, F = 108 (the code says 32,045,708)
  cifar10_no_attention     abl_noattn.py: gated nin instead of attention (31,443,440)
  digits                   8x8x1, F = 32, 2 blocks, K = 4: train.py's CPU-sized digits default
  imagenet32, imagenet64   the layouts and hyperparameters of the official ImageNet launchers
                           (flows_imagenet/launchers/imagenet{32,64}_official.py). Documented as
                           such, not exact: those launchers also use weight normalization and a
                           deeper dequantizer context network with attention (and ImageNet 64's
                           dequantizer couplings have no attention sub-block), which we do not
                           build, so their parameter counts (168,955,724 and 73,489,960) differ.
"""
import dataclasses

STAGE_KINDS = ("column", "channel")
COUPLINGS = ("mixlogistic", "affine")
DEQUANTIZATIONS = ("variational", "uniform")
INVERSES = ("bisection", "chandrupatla")


def parse_stage(spec):
    """"column:4" -> ("column", 4); "squeeze" -> ("squeeze", 0)."""
    if spec == "squeeze":
        return ("squeeze", 0)
    kind, _, steps = str(spec).partition(":")
    if kind not in STAGE_KINDS or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"stages entry {spec!r} must be 'squeeze' or '<column|channel>:<steps "
                         ">= 1>'")
    return (kind, int(steps))


@dataclasses.dataclass(frozen=True)
class FlowPPConfig:
    """Flow++ hyperparameters; defaults are the official CIFAR-10 run (run_cifar.py)."""

    image_size: int = 32
    n_channels: int = 3
    stages: tuple = ("column:4", "squeeze", "channel:2", "column:3")
    filters: int = 96               # F: conditioner width
    blocks: int = 10                # conv + attention blocks per coupling
    heads: int = 4
    components: int = 32            # K logistics per element
    dropout: float = 0.2
    coupling: str = "mixlogistic"   # or "affine" (ablation)
    attention: bool = True          # False: the no-attention ablation's gated nin
    pointwise: bool = True          # the 1x1 map in each step (absent in the ImageNet launchers)
    dequantization: str = "variational"   # or "uniform" (ablation)
    dequant_filters: int = 96
    dequant_blocks: int = 2
    dequant_steps: int = 4
    dequant_context_channels: int = 32
    dequant_context_blocks: int = 3
    dequant_attention: bool = True
    inverse: str = "bisection"      # or "chandrupatla" (per-element root finder)
    mixture_dtype: str = "float32"  # or "float64" for the mixture maths
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        for name in ("image_size", "n_channels", "filters", "blocks", "heads", "dequant_filters",
                     "dequant_blocks", "dequant_steps", "dequant_context_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling={self.coupling!r} must be one of {COUPLINGS}")
        if self.coupling == "mixlogistic" and int(self.components) < 1:
            raise ValueError(f"components (K) = {self.components} must be >= 1 for the "
                             "mixture-logistic coupling")
        if self.dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization={self.dequantization!r} must be one of "
                             f"{DEQUANTIZATIONS}")
        if self.inverse not in INVERSES:
            raise ValueError(f"inverse={self.inverse!r} must be one of {INVERSES}")
        if self.mixture_dtype not in ("float32", "float64"):
            raise ValueError(f"mixture_dtype={self.mixture_dtype!r} must be float32 or float64")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.filters % self.heads or self.dequant_filters % self.heads:
            raise ValueError(f"filters={self.filters} and dequant_filters={self.dequant_filters} "
                             f"must be divisible by heads={self.heads}")
        self.layout()  # checks the stages against the image shape

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.n_channels)

    @property
    def n_dims(self):
        return self.image_size * self.image_size * self.n_channels

    def layout(self):
        """[(kind, steps, input shape (H, W, C))] of each stage; raises on shapes that the
        stages cannot split (odd widths for a column split, odd channels, odd squeeze)."""
        if self.image_size % 2 and self.dequantization == "variational":
            raise ValueError(f"image_size={self.image_size} must be even: the dequantizer "
                             "column-splits the image")
        shape, out = self.image_shape, []
        for spec in self.stages:
            kind, steps = parse_stage(spec)
            h, w, c = shape
            if kind == "squeeze" and (h % 2 or w % 2):
                raise ValueError(f"stages: 'squeeze' needs even H and W; got {shape} "
                                 f"(image_size={self.image_size})")
            if kind == "column" and w % 2:
                raise ValueError(f"stages: '{spec}' needs an even width; got {shape} "
                                 f"(image_size={self.image_size})")
            if kind == "channel" and c % 2:
                raise ValueError(f"stages: '{spec}' needs an even number of channels; got "
                                 f"{shape}")
            out.append((kind, steps, shape))
            if kind == "squeeze":
                shape = (h // 2, w // 2, 4 * c)
        if not out:
            raise ValueError("stages must not be empty")
        return out

    @property
    def latent_shape(self):
        kind, _, (h, w, c) = self.layout()[-1]
        return (h // 2, w // 2, 4 * c) if kind == "squeeze" else (h, w, c)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """JSON-ready fields (stages as a list); from_dict inverts it."""
        d = dataclasses.asdict(self)
        d["stages"] = list(d["stages"])
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"FlowPPConfig.from_dict: unknown fields {unknown}; known: "
                             f"{sorted(names)}")
        return cls(**d)

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown Flow++ preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    "cifar10": dict(),
    "cifar10_uniform_dequant": dict(filters=104, dequantization="uniform"),
    "cifar10_affine": dict(filters=108, dequant_filters=108, coupling="affine"),
    "cifar10_no_attention": dict(attention=False, dequant_attention=False),
    "imagenet32": dict(
        stages=("column:4", "column:3", "squeeze", "channel:3", "column:3"), filters=128,
        blocks=20, components=32, dropout=0.0, pointwise=False, dequant_filters=128,
        dequant_blocks=8, dequant_steps=8),
    "imagenet64": dict(
        image_size=64, stages=("squeeze", "column:4", "squeeze", "channel:2", "column:2",
                               "squeeze", "channel:2", "column:2"),
        filters=96, blocks=16, components=4, dropout=0.0, pointwise=False, dequant_filters=96,
        dequant_blocks=5, dequant_steps=4, dequant_attention=False),
    # CPU-sized default of `train.py --model flowpp --problem digits` (8x8x1): every part of
    # the model (variational dequantizer, attention, mixture coupling), a few minutes to train.
    "digits": dict(
        image_size=8, n_channels=1, stages=("column:2", "squeeze", "channel:2", "column:2"),
        filters=32, blocks=2, heads=4, components=4, dequant_filters=32, dequant_blocks=1,
        dequant_steps=2, dequant_context_channels=16, dequant_context_blocks=1),
}
