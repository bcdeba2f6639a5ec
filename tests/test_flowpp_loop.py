"""Flow++ steps as one traced loop (tfglow.flowpp.loop): the same values and gradients as the
steps traced one by one, in both gradient modes, the same inverse, and a graph that does not
grow with a step's size per step."""
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


def _loss_and_grads(model, checkpoint, seed=0):
    """A float64 loss through the dequantizer (steps with a context) and the flow, training
    mode (dropout on): its value and the gradients of every trainable variable."""
    rng = np.random.default_rng(seed)
    shape = (2,) + model.config.image_shape
    x = tf.constant(rng.integers(0, 256, size=shape).astype(np.float64))
    eps = tf.constant(rng.normal(size=shape))
    model.gradient_checkpointing = checkpoint

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            u, dlogdet = model.dequantizer.forward(eps, image=x, training=True, seed=[5, 6],
                                                   checkpoint=checkpoint)
            z, logdet = model.encode_with_logdet(x + u, training=True, seed=tf.constant([3, 4]))
            loss = tf.reduce_mean(0.5 * tf.reduce_sum(z ** 2, [1, 2, 3]) - logdet - dlogdet)
        return loss, tape.gradient(loss, model.trainable_variables)
    loss, grads = run()
    return loss.numpy(), [tf.convert_to_tensor(g).numpy() for g in grads]


def _unlooped(monkeypatch):
    monkeypatch.setattr(loop, "applies", lambda steps: False)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_looped_steps_give_the_same_loss_and_gradients(model64, monkeypatch, checkpoint):
    calls = []
    forward = loop.forward
    monkeypatch.setattr(loop, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    looped = _loss_and_grads(model64, checkpoint)
    assert len(calls) == 3  # two stages and the dequantizer
    with monkeypatch.context() as m:
        _unlooped(m)
        one_by_one = _loss_and_grads(model64, checkpoint)
    # float64: only the order of the log|det| sum differs
    np.testing.assert_allclose(looped[0], one_by_one[0], rtol=1e-12)
    assert len(looped[1]) == len(one_by_one[1]) == len(model64.trainable_variables)
    for g, g0, v in zip(looped[1], one_by_one[1], model64.trainable_variables):
        np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-12, err_msg=v.path)
    assert max(np.abs(g).max() for g in looped[1]) > 0


def test_checkpointed_loop_equals_plain_loop(model64):
    plain = _loss_and_grads(model64, False, seed=2)
    checkpointed = _loss_and_grads(model64, True, seed=2)
    np.testing.assert_allclose(checkpointed[0], plain[0], rtol=1e-14)  # the same forward ops
    for g, g0 in zip(checkpointed[1], plain[1]):
        np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-12)


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


def test_loop_applies_only_traced_outside_the_init_and_to_several_steps(model64):
    steps = model64.stage0.steps
    assert len(steps) == 3 and not loop.applies(steps)  # eager

    @tf.function
    def check():
        with data_dependent_init():
            in_init = loop.applies(steps)
        return loop.applies(steps), in_init, loop.applies(steps[:1])
    assert check() == (True, False, False)


def _graph_size(stage, monkeypatch=None):
    cfg = small_config(stages=(stage,), dequantization="uniform", blocks=2)
    model = FlowPP(cfg)
    x = images(np.random.default_rng(4), 2, cfg)

    def loss_and_grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, seed=[1, 2], training=True)["loss"])
        return tape.gradient(loss, model.trainable_variables)
    graph = tf.function(loss_and_grads).get_concrete_function().graph
    ops = len(graph.get_operations())
    for f in graph._functions.values():  # the loop bodies
        ops += len(f.cached_definition.node_def)
    return ops


def test_graph_grows_by_the_weights_per_step_not_by_a_step(monkeypatch):
    per_step_looped = (_graph_size("column:5") - _graph_size("column:2")) / 3
    with monkeypatch.context() as m:
        _unlooped(m)
        per_step = (_graph_size("column:5") - _graph_size("column:2")) / 3
    # A traced step (2 blocks with attention, forward and backward) is ~1,000 ops; looped,
    # each further step only adds its variables' reads into the stack.
    assert per_step > 500
    assert per_step_looped < 0.15 * per_step
