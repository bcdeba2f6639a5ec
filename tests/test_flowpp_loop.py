"""Flow++ steps as one traced loop (tfglow.flowpp.loop): the same values as the steps traced one
by one (dropout and the dequantizer's context included), the same inverse, used only where no
gradient is recorded, and a graph that grows by the weights per step, not by a step."""
import numpy as np
import pytest
import tensorflow as tf

from flowpp_helpers import float64_layers, images, perturb, small_config
from tfglow.actnorm import data_dependent_init
from tfglow.flowpp import FlowPP, loop

# Stages of 3 and 2 steps (looped) and 1 (not); the dequantizer's 2 steps have a context.
STAGES = dict(stages=("column:3", "squeeze", "channel:2", "column:1"), dequant_steps=2)


@pytest.fixture(scope="module")
def model64():
    rng = np.random.default_rng(11)
    with float64_layers():
        model = FlowPP(small_config(**STAGES))
    perturb(model, rng, 0.05)
    return model


def _unlooped(monkeypatch):
    monkeypatch.setattr(loop, "applies", lambda steps: False)


def _terms(model, training):
    """Traced float64 pass through the dequantizer and the flow (dropout on if training):
    u, log|du/deps|, z, log|dz/dx|."""
    rng = np.random.default_rng(1)
    shape = (2,) + model.config.image_shape
    x = tf.constant(rng.integers(0, 256, size=shape).astype(np.float64))
    eps = tf.constant(rng.normal(size=shape))

    @tf.function
    def run():
        u, dlogdet = model.dequantizer.forward(eps, image=x, training=training, seed=[5, 6])
        z, logdet = model.encode_with_logdet(x + u, training=training, seed=tf.constant([3, 4]))
        return u, dlogdet, z, logdet
    return [t.numpy() for t in run()]


@pytest.mark.parametrize("training", [False, True])
def test_looped_steps_give_the_steps_values(model64, monkeypatch, training):
    calls = []
    forward = loop.forward
    monkeypatch.setattr(loop, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    looped = _terms(model64, training)
    assert len(calls) == 3  # two stages and the dequantizer
    with monkeypatch.context() as m:
        _unlooped(m)
        one_by_one = _terms(model64, training)
    # float64: only the order of the log|det| sums differs
    for a, b in zip(looped, one_by_one):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    if training:  # dropout is on: the values differ from evaluation's
        assert np.abs(looped[2] - _terms(model64, False)[2]).max() > 1e-3


def test_looped_inverse_equals_the_steps_inverse_and_inverts(model64, monkeypatch):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(1.0, 255.0, size=(2,) + model64.config.image_shape))
    z, logdet = tf.function(model64.encode_with_logdet)(x)
    x2, inv_logdet = tf.function(model64.decode_with_logdet)(z)
    np.testing.assert_allclose(x2.numpy(), x.numpy(), atol=1e-8)
    np.testing.assert_allclose(inv_logdet.numpy(), -logdet.numpy(), rtol=1e-10)
    with monkeypatch.context() as m:
        _unlooped(m)
        z0, logdet0 = tf.function(model64.encode_with_logdet)(x)
        x0, _ = tf.function(model64.decode_with_logdet)(z0)
    np.testing.assert_allclose(z.numpy(), z0.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logdet.numpy(), logdet0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x2.numpy(), x0.numpy(), atol=1e-9)


def test_loop_applies_only_traced_untaped_outside_the_init_to_several_steps(model64):
    steps = model64.stage0.steps
    assert len(steps) == 3 and not loop.applies(steps)  # eager

    @tf.function
    def check():
        with data_dependent_init():
            in_init = loop.applies(steps)
        with tf.GradientTape():
            taped = loop.applies(steps)
        return loop.applies(steps), in_init, taped, loop.applies(steps[:1])
    assert check() == (True, False, False, False)


def test_a_taped_pass_runs_the_steps_one_by_one(monkeypatch):
    """The train step records gradients: its steps are traced one by one (faster there)."""
    cfg = small_config(**STAGES)
    model = FlowPP(cfg)
    x = tf.constant(images(np.random.default_rng(2), 2, cfg))
    calls = []
    forward = loop.forward
    monkeypatch.setattr(loop, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, seed=[1, 2], training=True)["loss"])
        return tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads())
    assert not calls
    tf.function(lambda: model.loss_terms(x, seed=[1, 2], training=True)["loss"])()
    assert len(calls) == 3


def _graph_size(stage):
    cfg = small_config(stages=(stage,), dequantization="uniform", blocks=2)
    model = FlowPP(cfg)
    x = images(np.random.default_rng(4), 2, cfg)
    graph = tf.function(lambda: model.loss_terms(x, seed=[1, 2])["loss"]) \
        .get_concrete_function().graph
    ops = len(graph.get_operations())
    for f in graph._functions.values():  # the loop bodies
        ops += len(f.cached_definition.node_def)
    return ops


def test_graph_grows_by_the_weights_per_step_not_by_a_step(monkeypatch):
    per_step_looped = (_graph_size("column:5") - _graph_size("column:2")) / 3
    with monkeypatch.context() as m:
        _unlooped(m)
        per_step = (_graph_size("column:5") - _graph_size("column:2")) / 3
    # A traced step (2 blocks with attention) is a few hundred ops; looped, each further step
    # only adds its variables' reads into the stack.
    assert per_step > 200
    assert per_step_looped < 0.2 * per_step
