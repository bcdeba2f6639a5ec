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

`train_gemms` lists the matrix products themselves, as a train step on the CPU computes them
(tfglow.conv's matmul forms), so a benchmark can time each shape alone and bound the step.
"""
import dataclasses

from tfglow.conv import conv_form


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


@dataclasses.dataclass(frozen=True)
class Gemm:
    """`count` products a [m, k] @ b [k, n] (a stored transposed if transpose_a, b if
    transpose_b), as tf.matmul's arguments; `part` names the layer and pass."""

    m: int
    k: int
    n: int
    transpose_a: bool
    transpose_b: bool
    count: int
    part: str

    @property
    def flops(self):
        return 2 * self.m * self.k * self.n * self.count


def _conv_gemms(part, rows, c, d, kh, kw, edge_padded, count):
    """Forward, input-gradient and weight-gradient products of a stride-1 [kh, kw, C(+1), D]
    convolution over `rows` = B * H * W pixels in tfglow.conv's form (conv_form):

        1x1        y = x [N, C] @ W [C, D];        dx = dy @ W^T;    dW = x^T @ dy
        im2col     y = cols [N, kh*kw*C'] @ W;     dcols = dy @ W^T; dW = cols^T @ dy
                   (C' = C + 1 with edge padding)
        shift_add  Z = x [N, C] @ K' [C, kh*kw*D]; dx = dZ @ K'^T;   dK' = x^T @ dZ
    The edge-padding bias of shift_add (a [H*W, kh*kw] constant times [kh*kw, D]) is per
    image size, not per image, and is left out."""
    form = conv_form(c, d, kh, kw)
    if form == "native":
        raise ValueError("train_gemms: native convolutions are not matrix products")
    if form == "im2col":
        k, n = kh * kw * (c + 1 if edge_padded else c), d
    elif form == "shift_add":
        k, n = c, kh * kw * d
    else:
        k, n = c, d
    return [Gemm(rows, k, n, False, False, count, f"{part} forward"),
            Gemm(rows, n, k, False, True, count, f"{part} input gradient"),
            Gemm(k, rows, n, True, False, count, f"{part} weight gradient")]


def train_gemms(config, batch):
    """The per-pixel matrix products of one train step (forward and backward) of a GlowConfig
    at `batch`, as a list of Gemm, in the forms tfglow.conv uses now (not with native
    convolutions). Products whose size does not grow with the batch (the 1x1 convolutions'
    C x C weight algebra, the learned top prior, edge-padding biases) are left out; the input
    gradient of the first layer is included (TensorFlow's graph has it). Their FLOPs sum to
    batch * count_flops(config).train_step, less the edge channel of the shift-add form's
    9 * D per pixel, which is a bias there."""
    cfg = config
    h = w = cfg.image_size
    c = cfg.n_channels
    gemms = []
    for level in range(cfg.n_levels):
        h, w, c = h // 2, w // 2, c * 4
        rows = batch * h * w
        c_out = c if cfg.flow_coupling == 1 else c // 2
        at = f"level {level}"
        if cfg.flow_permutation in (2, 3):
            gemms += _conv_gemms(f"{at} 1x1 invertible conv", rows, c, c, 1, 1, False, cfg.depth)
        gemms += _conv_gemms(f"{at} NN conv 3x3", rows, c // 2, cfg.width, 3, 3, True, cfg.depth)
        gemms += _conv_gemms(f"{at} NN conv 1x1", rows, cfg.width, cfg.width, 1, 1, False,
                             cfg.depth)
        gemms += _conv_gemms(f"{at} NN conv zeros", rows, cfg.width, c_out, 3, 3, True, cfg.depth)
        if level < cfg.n_levels - 1:
            gemms += _conv_gemms(f"{at} split prior", rows, c // 2, c, 3, 3, True, 1)
            c //= 2
    return gemms
