"""One trace per step structure: a level's flow steps share a traced function.

The hierarchical model's levels interleave split types (Config A: "2C,2S2,2S4,2S8"), so its
steps do not form runs of identical steps that a loop over stacked weights could take (as
Glow's and Flow++'s levels do, tfglow.scan). What makes the steps of a level differ is only
their weights and their split masks. So, in a graph, step k runs as a call of one
tf.function traced on a template step of the same structure, with

    step_k.forward(x, cond) == shared(x, cond, weights_k, masks_k)

where weights_k are step k's variables (read where the step runs, so a tape sees them and the
gradients reach step k's own variables) and masks_k its (visible, transformed) masks
[R, R, C]. Inside the trace the template's variables are replaced by the weights passed in
(keras.StatelessScope); a trace that reads any variable directly is refused, so no step can
run on another's weights. The graph then grows with the number of distinct structures per
level (at most two: a ConvConditioner for C splits, a U-Net for spatial ones), not with K, and
TensorFlow builds the gradient of each traced function once. The functions are not inlined
(`_noinline`), so Grappler optimises each body once; inlined, the first call of the train step
took as long as with every step traced. Values and gradients equal the steps called one by one
(to 1e-12 in float64: `tests/test_hierarchical_shared_trace.py`).

Not used eagerly (nothing is traced there) or in the data-dependent init, whose actnorms
assign their own variables.
"""
import keras
import tensorflow as tf


def structure(step):
    """What two steps must share to share a trace: layer types and variable shapes."""
    return (type(step.coupling.net).__name__, type(step.invconv).__name__,
            step.coupling.net.is_cond,
            tuple((tuple(v.shape), str(v.dtype)) for v in step.variables))


class SharedSteps:
    """A flow's steps grouped by `structure`; `run` sends step k through its group's traced
    function. One per ConditionalFlow (holds no variables, so checkpoints do not see it)."""

    def __init__(self, steps):
        self._template = {}
        self._key = []
        for step in steps:
            key = structure(step)
            self._template.setdefault(key, step)
            self._key.append(key)
        self._functions = {}

    @property
    def n_structures(self):
        return len(self._template)

    def _function(self, key, direction):
        fn = self._functions.get((key, direction))
        if fn is None:
            template = self._template[key]
            method = getattr(template, direction)

            def body(x, cond, weights, masks):
                mapping = list(zip(template.variables, weights))
                with keras.StatelessScope(state_mapping=mapping):
                    return method(x, cond=cond, masks=masks)

            fn = tf.function(body, autograph=False,
                             experimental_attributes={"_noinline": True})
            self._functions[(key, direction)] = fn
        return fn

    def run(self, k, step, direction, x, cond):
        """step.<direction>(x, cond=cond) through the shared trace: (y [B, R, R, C], ld [B])."""
        fn = self._function(self._key[k], direction)
        weights = [tf.convert_to_tensor(v) for v in step.variables]
        masks = step.coupling.net.masks(x.dtype)
        concrete = fn.get_concrete_function(x, cond, weights, masks)
        if concrete.captured_inputs:
            raise RuntimeError(
                f"{step.name}: the trace it shares with {self._template[self._key[k]].name} "
                f"captures {len(concrete.captured_inputs)} tensor(s) or variable(s) instead "
                "of taking them as arguments, so every step would use the same values")
        return fn(x, cond, weights, masks)
