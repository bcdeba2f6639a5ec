"""hflow's learning-rate schedule of its three parameter groups (reference: "Loss, training").

Adam with one learning rate per group (HierarchicalFlow.parameter_groups):

    lr_g(e) = lr * RATIO[g] * DECAY[g] ** n(e) * [g != encoders or e < freeze]
    n(e)    = #{even e' : START < e' <= e}        (e: 0-based epoch, as hflow's loop)

with lr = --lr (5e-3, the flows' rate), RATIO = 1 / 0.4 / 0.1 (flows 5e-3, decoders 2e-3,
encoders 5e-4), DECAY 0.95 / 0.95 / 0.92, START 10, and the encoders' rate 0 from epoch
`freeze` (hflow: 60) on, which leaves them exactly unchanged (Adam's step is lr times the
moment ratio). freeze < 0: never.

This is hflow's single-process schedule (utils.py Network: MultiplicativeLR, factor at epoch
x if x is even and x > LEARNING_RATE_DECAY_START, encoders 0 from LEARNING_RATE_CUT_ENCODERS);
its multi-GPU path (model.py train_distributed_fn) omits the start and decays from epoch 2.
"""
from tfglow.hierarchical.eqlr import GROUPS

LEARNING_RATES = {"flows": 5e-3, "decoders": 2e-3, "encoders": 5e-4}
DECAY = {"flows": 0.95, "decoders": 0.95, "encoders": 0.92}
DECAY_START = 10
FREEZE_ENCODER_EPOCH = 60


def decays(epoch, start=DECAY_START):
    """n(e): the even epochs e' with start < e' <= epoch (0-based)."""
    first = start + 1 + (start + 1) % 2  # the first even epoch after start
    return 0 if epoch < first else (epoch - first) // 2 + 1


def group_scales(epoch, freeze_encoder_epoch=FREEZE_ENCODER_EPOCH):
    """[3] multipliers of --lr for (flows, decoders, encoders) in 0-based `epoch`."""
    n = decays(epoch)
    scales = [LEARNING_RATES[g] / LEARNING_RATES["flows"] * DECAY[g] ** n for g in GROUPS]
    if 0 <= freeze_encoder_epoch <= epoch:
        scales[GROUPS.index("encoders")] = 0.0
    return scales


def variable_groups(model, variables):
    """One group index (into GROUPS) per variable of `variables` (the optimizer's list)."""
    index = {}
    for g, vs in model.parameter_groups().items():
        for v in vs:
            index[id(v)] = GROUPS.index(g)
    missing = [v.path for v in variables if id(v) not in index]
    if missing:
        raise ValueError(f"variables in no learning-rate group: {missing[:3]}")
    return [index[id(v)] for v in variables]
