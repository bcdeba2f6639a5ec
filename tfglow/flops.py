"""Floating-point operations of a Glow model, counted from its layer shapes.

Counts the multiply-adds of every convolution and matrix product (2 FLOPs each) for one
image of a GlowConfig; elementwise work (actnorm, ReLU, sigmoid, log-determinants) is left
out: it is a few percent of the total for any width >= 64. Per flow step of a level with
feature map h x w x C (after its squeeze), per pixel:

    1x1 convolution (flow_permutation 2, 3)        C * C
    coupling NN: 3x3 conv (C/2 + 1 -> width)       9 * (C/2 + 1) * width   (+1: edge channel)
                 1x1 conv (width -> width)         width * width
                 3x3 conv (width + 1 -> C_out)     9 * (width + 1) * C_out, C_out = C (affine)
                                                                            or C/2 (additive)
and per split (all levels but the last): 3x3 conv (C/2 + 1 -> C) on the kept half.
The learned top prior convolves a constant once per batch and is not counted.

Training (forward + backward) is 3x the forward count: the backward pass of each product
computes the gradient of its input and of its weights, each as large as the forward one.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs for one image: forward pass by component, and the train step total."""

    invconv: int
    coupling: int
    split_prior: int

    @property
    def forward(self):
        return self.invconv + self.coupling + self.split_prior

    @property
    def train_step(self):
        """Forward + backward (3x forward), per image."""
        return 3 * self.forward


def count_flops(config):
    """FlopCount of a tfglow.GlowConfig for one image (see the module docstring)."""
    cfg = config
    h = w = cfg.image_size
    c = cfg.n_channels
    invconv = coupling = split_prior = 0
    for level in range(cfg.n_levels):
        h, w, c = h // 2, w // 2, c * 4
        pixels = h * w
        c_out = c if cfg.flow_coupling == 1 else c // 2
        per_step = (9 * (c // 2 + 1) * cfg.width + cfg.width * cfg.width
                    + 9 * (cfg.width + 1) * c_out)
        coupling += 2 * cfg.depth * pixels * per_step
        if cfg.flow_permutation in (2, 3):
            invconv += 2 * cfg.depth * pixels * c * c
        if level < cfg.n_levels - 1:
            split_prior += 2 * pixels * 9 * (c // 2 + 1) * c
            c //= 2
    return FlopCount(invconv=invconv, coupling=coupling, split_prior=split_prior)
