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

`share_traces` (attribute, default on): in a graph, steps of the same structure run as calls of
one traced function with their own weights and masks (tfglow.hierarchical.shared_trace), so
the graph holds at most two step bodies per level instead of K.
"""
import tensorflow as tf

from tfglow.actnorm import ddi_active
from tfglow.flow import FlowLayer, sum_except_batch
from tfglow.hierarchical.shared_trace import SharedSteps
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
        self.share_traces = True
        self._shared = SharedSteps(self.steps)
        self.built = True

    def _runner(self, direction):
        """(k, step, x, cond) -> step.<direction>(x, cond=cond): shared traces in a graph."""
        if self.share_traces and tf.inside_function() and not ddi_active():
            return lambda k, step, x, c: self._shared.run(k, step, direction, x, c)
        return lambda k, step, x, c: getattr(step, direction)(x, cond=c)

    def forward(self, x, cond=None, affine=None, **unused):
        logdet = 0.0
        if affine is not None:
            start_b, start_s, end_b, end_s = affine
            x = (x - start_b) * tf.exp(-start_s)
            logdet = -sum_except_batch(start_s)
        checkpoint = self.checkpoint and not ddi_active()
        run = self._runner("forward")
        for k in reversed(range(len(self.steps))):
            step = self.steps[k]
            if checkpoint:
                x, d = recomputed(lambda x, c, k=k, step=step: run(k, step, x, c), x, cond)
            else:
                x, d = run(k, step, x, cond)
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
        run = self._runner("inverse")
        for k, step in enumerate(self.steps):
            z, d = run(k, step, z, cond)
            logdet = logdet + d
        if affine is not None:
            z = z * tf.exp(start_s) + start_b
            logdet = logdet + sum_except_batch(start_s)
        return z, logdet

