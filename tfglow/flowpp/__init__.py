"""Flow++ (Ho et al., 2019) on tfglow's FlowLayer / TFP bijector pieces.

    from tfglow.flowpp import FlowPP, FlowPPConfig
    model = FlowPP(FlowPPConfig.preset("cifar10"))
    model.initialize(x_uint8)                    # official data-dependent init
    bpd = model.bits_per_dim(x_uint8)            # one dequantization sample
    iw = model.importance_weighted_bits_per_dim(x_uint8, 64)

Modules, one concept each (paper section; official file):
    logit        ImgProc input map                    (flows.py:254-268)
    splits       column / channel split, space_to_depth (flows.py:283-322)
    pair         pairs of halves, Parallel, TupleFlip
    norm         per-activation normalization         (flows.py:328-365)
    pointwise    noisy-identity 1x1 map               (flows.py:368-420)
    mixlogistic  mixture-logistic CDF, logit, inverse (eq. 17-18; logistic.py)
    conditioner  gated resnet + attention network     (section 3.2.2; flows.py:26-161)
    coupling     mixture-logistic / affine coupling   (eq. 19-20; flows.py:443-529)
    step         Norm -> Pointwise -> Coupling -> TupleFlip, checkpointing
    dequant      variational / uniform dequantization (section 3.1; run_cifar.py:23-54)
    config       FlowPPConfig and presets
    model        FlowPP
    flops        FLOPs per image from the shapes
"""
from tfglow.flowpp.config import PRESETS, FlowPPConfig
from tfglow.flowpp.model import FlowPP

__all__ = ["FlowPP", "FlowPPConfig", "PRESETS"]
