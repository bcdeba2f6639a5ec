"""Compiled functions of a model large enough for Grappler's memory optimizer run repeatedly.

The `celeba` preset's train step failed at its second call with AlreadyExistsError on an
".../AddOpsRewrite_add_7/tmp_var" (tensorflow/tensorflow#23780) while each level's loop
body (tfglow.scan) added the step's log|det| to a running sum; see the tfglow.scan docstring.
The memory optimizer makes that rewrite only when the static peak-memory estimate of the
graph exceeds 80% of the device's memory (256 MB for a CPU device), and only to AddNs with an
input live at that peak, so these tests need large hidden activations. The smallest trigger
found: 256 px at batch 8 (an estimated peak of 292 MB), width 128, two levels of one step
each, additive coupling (`celeba`'s); the forward pass alone needs batch 16. Without the fix
each test fails at its second call; one level, the affine coupling, or width 64 at batch 16
(a 395 MB estimate) did not fail.
"""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from tfglow import evaluation
from tfglow.optim import make_optimizer
from tfglow.training.distribute import make_runtime
from tfglow.training.step import TrainStep

CONFIG = dict(image_size=256, n_levels=2, depth=1, width=128, flow_coupling=0,
              flow_permutation=2, learntop=True, n_y=1, n_bits_x=5)


def model_and_batch(batch, mode=0):
    cfg = tfglow.GlowConfig(**CONFIG)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, size=(batch,) + cfg.image_shape, dtype=np.uint8))
    y = tf.zeros([batch], tf.int32)
    model = tfglow.Glow(cfg, gradient_checkpointing=mode)
    model.initialize(x)
    return model, x, y


@pytest.mark.parametrize("mode", [0, 1])
def test_compiled_train_step_runs_more_than_once(mode):
    model, x, y = model_and_batch(8, mode)
    optimizer = make_optimizer("adamax", lr=1e-4, train_its=100)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, make_runtime("none"), seed=0)
    losses = [float(step((x, y), i)["loss"]) for i in range(3)]
    assert np.all(np.isfinite(losses)), losses


def test_compiled_forward_pass_runs_more_than_once():
    # A fixed batch shape (evaluation.compiled_terms leaves it unknown, and Grappler does not
    # rewrite AddNs of unknown shape).
    model, x, y = model_and_batch(16)
    terms = tf.function(lambda: evaluation.per_image_terms(model, x, y)["bits_x"])
    first, second = terms().numpy(), terms().numpy()
    np.testing.assert_array_equal(first, second)
