"""Floating-point operations of a Flow++ model per image, counted from the layer shapes.

2 FLOPs per multiply-add of every convolution, 1x1 ("nin") and matrix product; elementwise
work (mixture CDFs, norms, activations) is left out. Per coupling on a half [h, w, c] with
T = h*w positions, F filters, K components, n_out = c * (2 + 3K) (affine: 2c):

    proj_in        T * 9 * c * F
    per block      gated conv: T * 9 * 2F * F  (3x3 on concat_elu)  + T * 2F * 2F  (nin)
                               [+ T * 2*ctx * F  (context projection, dequantizer)]
                   attention:  T * F * 3F (q, k, v) + 2 * T * T * F (q k^T and weights @ v)
                               + T * F * 2F (output projection)
    proj_out       T * 9 * F * n_out
    Pointwise      2 * T * c * c (one per half)

and the dequantizer's context network on [H, W/2, 2C] -> 32: a 3x3 conv and 3 gated convs of
two 3x3 convs each. Training (forward + backward) counts 3x the forward.
"""
import dataclasses

from tfglow.flowpp.splits import split_shape


@dataclasses.dataclass(frozen=True)
class FlowPPFlops:
    flow: int          # main flow, forward, per image
    dequantizer: int   # context network + dequantizer flow, forward, per image

    @property
    def forward(self):
        return self.flow + self.dequantizer

    @property
    def train_step(self):
        return 3 * self.forward


def coupling_flops(half, filters, blocks, components, attention=True, context=0,
                   pointwise=True, affine=False):
    h, w, c = half
    t, f = h * w, filters
    n_out = c * (2 if affine else 2 + 3 * components)
    block = t * 9 * 2 * f * f + t * 2 * f * 2 * f + t * 2 * context * f
    block += t * f * 3 * f + t * f * 2 * f + (2 * t * t * f if attention else 0)
    macs = t * 9 * c * f + blocks * block + t * 9 * f * n_out
    macs += 2 * t * c * c if pointwise else 0
    return 2 * macs


def count_flops(config):
    """FlowPPFlops of a FlowPPConfig for one image (see the module docstring)."""
    cfg = config
    affine = cfg.coupling == "affine"
    flow = 0
    for kind, steps, shape in cfg.layout():
        if kind != "squeeze":
            flow += steps * coupling_flops(split_shape(shape, kind), cfg.filters, cfg.blocks,
                                           cfg.components, cfg.attention, 0, cfg.pointwise,
                                           affine)
    deq = 0
    if cfg.dequantization == "variational":
        h, w, c = cfg.image_shape
        t, ctx = h * (w // 2), cfg.dequant_context_channels
        per_block = t * 9 * 2 * ctx * ctx + t * 9 * 2 * ctx * 2 * ctx
        deq = 2 * (t * 9 * 2 * c * ctx + cfg.dequant_context_blocks * per_block)
        deq += cfg.dequant_steps * coupling_flops(
            (h, w // 2, c), cfg.dequant_filters, cfg.dequant_blocks, cfg.components,
            cfg.dequant_attention, ctx, cfg.pointwise, affine)
    return FlowPPFlops(flow=flow, dequantizer=deq)
