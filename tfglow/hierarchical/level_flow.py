"""A level's conditional flow (hflow network.py:621-773, `ResolutionSteps`).

Encoding direction, with the decoder's conditional affine maps (start_b, start_s, end_b, end_s)
(s clipped to +-3 by the decoder) and its conditioning tensor `cond`:

    x -> (x - start_b) * exp(-start_s) -> steps K-1, ..., 0 -> (x - end_b) * exp(-end_s) = z
    log|det| = -sum(start_s) + sum of the steps' log-dets - sum(end_s)

"start" and "end" are named from the generation side, as the code. Steps are indexed in the
generation order; `splits` lists their split types in that order (tfglow.hierarchical.masks).
Without `affine` (the end block) the affine maps are skipped.

`checkpoint` (attribute, read at tracing; set by HierarchicalFlow.gradient_checkpointing):
each step is recomputed in the backward pass (step.recomputed), so only the step boundaries
[B, H, W, C] are kept, not the coupling networks' hidden layers. Not during the data-dependent
init, whose actnorms assign their variables in the forward pass.
"""
import tensorflow as tf

from tfglow.actnorm import ddi_active
from tfglow.flow import FlowLayer, sum_except_batch
from tfglow.hierarchical.step import FlowStep, recomputed


class ConditionalFlow(FlowLayer):
    def __init__(self, channels, res, hidden, splits, cond_channels=None, name=None,
                 **step_kwargs):
        super().__init__(name=name)
        self.channels, self.res = int(channels), int(res)
        self.steps = [FlowStep(channels, res, hidden, split, i, cond_channels=cond_channels,
                               name=f"step{i}", **step_kwargs)
                      for i, split in enumerate(splits)]
        self.checkpoint = False
        self.built = True

    def forward(self, x, cond=None, affine=None, **unused):
        logdet = 0.0
        if affine is not None:
            start_b, start_s, end_b, end_s = affine
            x = (x - start_b) * tf.exp(-start_s)
            logdet = -sum_except_batch(start_s)
        checkpoint = self.checkpoint and not ddi_active()
        for step in reversed(self.steps):
            if checkpoint:
                x, d = recomputed(lambda x, c, step=step: step.forward(x, cond=c), x, cond)
            else:
                x, d = step.forward(x, cond=cond)
            logdet = logdet + d
        if affine is not None:
            x = (x - end_b) * tf.exp(-end_s)
            logdet = logdet - sum_except_batch(end_s)
        return x, logdet

    def inverse(self, z, cond=None, affine=None, **unused):
        logdet = 0.0
        if affine is not None:
            start_b, start_s, end_b, end_s = affine
            z = z * tf.exp(end_s) + end_b
            logdet = sum_except_batch(end_s)
        for step in self.steps:
            z, d = step.inverse(z, cond=cond)
            logdet = logdet + d
        if affine is not None:
            z = z * tf.exp(start_s) + start_b
            logdet = logdet + sum_except_batch(start_s)
        return z, logdet

