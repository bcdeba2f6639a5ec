"""One step of a level's conditional flow (hflow network.py:560-618, `Step`).

Encoding direction: HActNorm -> MaskedAffineCoupling -> 1x1 convolution (free-form or unitary).
No squeeze, no split: shapes stay [B, H, W, C]. Conditioning kwarg: `cond` (see coupling).
"""
from tfglow.flow import FlowLayer
from tfglow.hierarchical.actnorm import HActNorm
from tfglow.hierarchical.conditioners import ConvConditioner, UNetConditioner
from tfglow.hierarchical.coupling import MaskedAffineCoupling
from tfglow.hierarchical.invconv import FreeFormInvConv, UnitaryInvConv
from tfglow.hierarchical.masks import split_masks


class FlowStep(FlowLayer):
    """split: "C", "S2", "S4", "S8"; index: the step's index in the generation order (flips the
    spatial masks on even indices). U-Net coupling networks for spatial splits at >= 4 px."""

    def __init__(self, channels, res, hidden, split, index, cond_channels=None, kernel=3,
                 unitary=False, permute_scaling=0.3, unet_downscales=2, unet_mult=2.0,
                 unet_double=False, rng=None, **kwargs):
        super().__init__(**kwargs)
        self.split, self.index = split, int(index)
        visible, transformed = split_masks(split, int(res), int(channels), self.index)
        net_kw = dict(cond_channels=cond_channels, kernel=kernel, rng=rng, name="net")
        if split != "C" and res >= 4:
            net = UNetConditioner(channels, res, hidden, visible, transformed,
                                  downscales=unet_downscales, mult=unet_mult, double=unet_double,
                                  **net_kw)
        else:
            net = ConvConditioner(channels, res, hidden, visible, transformed, **net_kw)
        self.actnorm = HActNorm(channels, name="actnorm")
        self.coupling = MaskedAffineCoupling(net, name="coupling")
        conv = UnitaryInvConv if unitary else FreeFormInvConv
        self.invconv = conv(channels, scaling=permute_scaling, rng=rng, name="invconv")
        self.built = True

    def forward(self, x, cond=None, **unused):
        x, a = self.actnorm.forward(x)
        x, b = self.coupling.forward(x, cond=cond)
        x, c = self.invconv.forward(x)
        return x, a + b + c

    def inverse(self, y, cond=None, **unused):
        y, c = self.invconv.inverse(y)
        y, b = self.coupling.inverse(y, cond=cond)
        y, a = self.actnorm.inverse(y)
        return y, a + b + c
