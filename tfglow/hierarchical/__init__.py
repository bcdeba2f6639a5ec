"""The invertible hierarchical generative model (paper 004; official code timoneh/hflow).

    from tfglow.hierarchical import HierarchicalFlow, HierarchicalConfig
    model = HierarchicalFlow(HierarchicalConfig.preset("cpu16"))
    model.initialize(x_uint8)                      # data-dependent actnorm init
    terms = model.loss_terms(x_uint8, training=True)   # hflow's weighted loss, ELBO bits/dim
    zs = model.encode(model.bin_centres(x_uint8)); x = model.decode(zs)   # exact
    images = model.sample(16, temperature=0.8)

Modules, one concept each (hflow network.py lines):
    eqlr          equalized-learning-rate conv / dense            (:776-863)
    resample      anti-aliased [1,3,3,1]/8 down/up, bilinear     (:9-27)
    norm          instance normalisation                          (:222-227)
    masks         C / S2 / S4 / S8 split masks                    (:66-112)
    noise         minibatch noise scale and its entropy           (eq. 11; :1181-1189)
    conditioners  3-conv and U-Net coupling networks              (:29-388)
    unet          the decoders' U-Net                             (:893-1000)
    actnorm, coupling, invconv, step, level_flow   the conditional flows (:392-773)
    encoder, decoder, level                        one resolution level (:1003-1335, :1896-2089)
    endblock      the 1x1 latent: encoder, prior flows, style MLP (:1337-1482, :866-888)
    config        HierarchicalConfig and presets
    model         HierarchicalFlow
"""
from tfglow.hierarchical.config import PRESETS, HierarchicalConfig
from tfglow.hierarchical.model import HierarchicalFlow

__all__ = ["HierarchicalFlow", "HierarchicalConfig", "PRESETS"]
