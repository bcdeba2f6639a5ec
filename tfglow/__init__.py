"""tfglow: Glow (Kingma & Dhariwal, 2018) in TensorFlow 2 / Keras 3 with TFP bijectors.

    import tfglow
    cfg = tfglow.GlowConfig.preset("cifar10")
    model = tfglow.Glow(cfg)
    model.initialize(x_uint8)
    bpd = model.bits_per_dim(x_uint8)

Modules, one concept each (Glow Table 1 and Figure 2):
    actnorm      ActNorm                         (section 3.1)
    invconv      InvConv1x1, LUInvConv1x1        (section 3.2, eq. 9-11)
    permutation  Reverse, Shuffle                (section 3.3, "Permutation")
    coupling     AdditiveCoupling, AffineCoupling (section 3.3)
    nn           the coupling network NN() and its zero-initialised convolutions
    step         FlowStep: actnorm -> permutation -> coupling
    squeeze      squeeze2d / unsqueeze2d
    split        Split2d: factor-out with the learned conditional prior
    prior        TopPrior (learntop, ycond) and the class predictor
    model        Glow: the multi-scale model
    objective    preprocess, dequantisation, bits/dim (eq. 2)
    flow         FlowLayer and its TFP bijector adapter
    memory       gradient modes of the flow steps: backprop, recompute, reversible
    recompute    per-step recomputation (--gradient_checkpointing 1)
    reversible   reversible backpropagation (--gradient_checkpointing 2; Glow section 6)
    optim        the original's Adamax / Adam and Polyak averaging
    data         TFRecords and the tf.data input pipeline
    training     train.py's flags, distribution, train step, loop and checkpoints
    evaluation, sampling, export   evaluate.py's bits/dim, samples and edits, SavedModel
"""
import os as _os

# oneDNN's CPU kernels: TensorFlow turns them on by default only on CPUs with AVX-512-class
# features. On others (the AVX2 machine of our benchmarks) its own batched matmuls run Flow++'s
# attention 2-4x slower (benchmarks/results/flowpp.json, "onednn" rows). Effective only when
# tfglow is imported before TensorFlow, as train.py and evaluate.py do; set
# TF_ENABLE_ONEDNN_OPTS=0 to keep TensorFlow's choice.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from tfglow.actnorm import ActNorm  # noqa: E402
from tfglow.config import PRESETS, GlowConfig  # noqa: E402
from tfglow.coupling import AdditiveCoupling, AffineCoupling  # noqa: E402
from tfglow.flow import FlowBijector, FlowLayer  # noqa: E402
from tfglow.invconv import InvConv1x1, LUInvConv1x1  # noqa: E402
from tfglow.model import Glow  # noqa: E402
from tfglow.permutation import Reverse, Shuffle  # noqa: E402
from tfglow.prior import TopPrior  # noqa: E402
from tfglow.split import Split2d  # noqa: E402
from tfglow.squeeze import Squeeze, squeeze2d, unsqueeze2d  # noqa: E402
from tfglow.step import FlowStep  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "FlowBijector", "FlowLayer", "FlowStep",
    "Glow", "GlowConfig", "InvConv1x1", "LUInvConv1x1", "PRESETS", "Reverse", "Shuffle",
    "Split2d", "Squeeze", "TopPrior", "squeeze2d", "unsqueeze2d",
]
