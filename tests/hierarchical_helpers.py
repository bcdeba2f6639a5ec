"""Shared helpers of the hierarchical-model tests: tiny configurations and images."""
import numpy as np

from tfglow.hierarchical import HierarchicalConfig


def tiny_config(**changes):
    """16x16x3, two levels (16, 8) with K = 2, every kind of part (U-Net couplings, predictor,
    style, refinement U-Net, end block); ~0.14M parameters."""
    return HierarchicalConfig.preset("cpu16", seed=5, **changes)


def images(rng, n, cfg):
    return rng.integers(0, 256, size=(n,) + cfg.image_shape, dtype=np.uint8)
