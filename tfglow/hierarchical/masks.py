"""Coupling split masks (hflow network.py:66-112, :281-305).

Split types, paper notation (code name): C (channels): the coupling sees the first
floor(C/2) channels and transforms the rest, never flipped. S2, S4, S8 (blocks, lblocks,
hblocks): checkerboards of k x k pixel blocks; the block at (i // k, j // k) is visible when
(i // k + j // k) is even, and the visible and transformed parts swap on even step indices
(indices count steps in the generation direction, as the code's `ind`). As the code, the
visible mask is scaled by sqrt(2) (the conditioner's input is x * mask_in).
"""
import re

import numpy as np

SPLIT_BLOCK = {"S2": 2, "S4": 4, "S8": 8}
SPLIT_TYPES = ("C",) + tuple(SPLIT_BLOCK)


def checkerboard(res, k):
    """[res, res] of 0/1: 1 where (i // k + j // k) is even."""
    idx = np.arange(res) // k
    return ((idx[:, None] + idx[None, :]) % 2 == 0).astype(np.float64)


def split_masks(kind, res, channels, step_index):
    """(visible, transformed) 0/1 masks [res, res, channels] of one coupling.

    visible + transformed == 1 everywhere. Raises ValueError on impossible splits."""
    if kind == "C":
        if channels < 2:
            raise ValueError(f"split C needs >= 2 channels; got {channels}")
        visible = np.zeros((res, res, channels))
        visible[..., :channels - int(np.ceil(channels / 2))] = 1.0
    elif kind in SPLIT_BLOCK:
        k = SPLIT_BLOCK[kind]
        if res < 2 * k or res % (2 * k):
            raise ValueError(f"split {kind} needs a resolution that is a multiple of {2 * k}; "
                             f"got {res}")
        visible = np.repeat(checkerboard(res, k)[:, :, None], channels, axis=2)
        if step_index % 2 == 0:
            visible = 1.0 - visible
    else:
        raise ValueError(f"split type {kind!r} must be one of {SPLIT_TYPES}")
    return visible, 1.0 - visible


def parse_splits(spec, n_steps):
    """"2C,2S2" (counts and types from the input side) -> per-step types in the generation
    order (step index 0 is the last one applied when encoding). Raises on a count mismatch."""
    out = []
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d*)(C|S2|S4|S8)", part)
        if m is None or (m.group(1) and int(m.group(1)) < 1):
            raise ValueError(f"split spec {spec!r}: entry {part!r} must be [count]<C|S2|S4|S8>")
        out += [m.group(2)] * (int(m.group(1)) if m.group(1) else 1)
    if len(out) != n_steps:
        raise ValueError(f"split spec {spec!r} gives {len(out)} steps; the level has {n_steps}")
    return out[::-1]
