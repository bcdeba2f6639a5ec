"""tfglow.grappler: Grappler off for one thread's function calls, and the train step's use of it."""
import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context

import tfglow
from flowpp_helpers import images, small_config
from tfglow.flowpp import FlowPP
from tfglow.grappler import graph_optimizer, grappler_disabled, with_model_setting
from tfglow.optim import make_optimizer
from tfglow.training.distribute import make_runtime
from tfglow.training.step import TrainStep


def _optimized_node_count(fn, x):
    """Nodes of fn's graph after the runtime's optimization, from the eager run metadata."""
    ctx = context.context()
    ctx.enable_run_metadata()
    try:
        fn(x).numpy()
        meta = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    graphs = [g.post_optimization_graph for g in meta.function_graphs]
    return max(len(g.node) for g in graphs)


def test_off_inside_the_block_only_and_restored_after_an_error():
    before = context.context().function_call_options
    assert not grappler_disabled()
    with graph_optimizer(True):
        assert not grappler_disabled()
    with pytest.raises(RuntimeError):
        with graph_optimizer(False):
            assert grappler_disabled()
            raise RuntimeError("inside")
    assert context.context().function_call_options is before
    assert not grappler_disabled()


def test_other_config_is_kept_and_other_threads_are_untouched():
    before = config_pb2.ConfigProto()
    before.ParseFromString(context.context().function_call_options.config_proto_serialized)
    seen = {}
    with graph_optimizer(False):
        inside = config_pb2.ConfigProto()
        inside.ParseFromString(context.context().function_call_options.config_proto_serialized)
        thread = threading.Thread(target=lambda: seen.setdefault("other", grappler_disabled()))
        thread.start()
        thread.join()
    assert inside != before
    before.graph_options.rewrite_options.disable_meta_optimizer = True
    assert inside == before
    assert seen["other"] is False


def test_a_function_called_inside_is_optimized_without_grappler():
    # Grappler's dependency optimizer removes the chain of identities; without it they stay.
    def chain(x):
        for _ in range(20):
            x = tf.identity(x)
        return x * 2.0

    x = tf.constant([1.0, 2.0])
    on = _optimized_node_count(tf.function(chain), x)
    with graph_optimizer(False):
        off = _optimized_node_count(tf.function(chain), x)
    assert off >= on + 20


def test_with_model_setting_wraps_every_call_only_for_models_without_grappler():
    seen = []

    def fn(a):
        seen.append(grappler_disabled())
        return a + 1

    class Model:
        graph_optimizer = False

    wrapped = with_model_setting(Model(), fn)
    assert [wrapped(i) for i in range(3)] == [1, 2, 3] and seen == [True] * 3
    Model.graph_optimizer = True
    assert with_model_setting(Model(), fn) is fn
    assert with_model_setting(object(), fn) is fn  # no attribute: Grappler on


def _losses_and_settings(model, batch, steps=3):
    """(losses, grappler_disabled() at each trace of the model's loss) of `steps` train steps."""
    optimizer = make_optimizer("adam", lr=1e-3, beta2=0.999, train_its=100)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, make_runtime("none"), seed=0)
    traces, loss_terms = [], model.loss_terms
    model.loss_terms = lambda *a, **k: (traces.append(grappler_disabled()),
                                        loss_terms(*a, **k))[1]
    return [float(step(batch, i)["loss"]) for i in range(steps)], traces


def test_flowpp_steps_run_without_grappler_glow_steps_with_it_and_the_loss_is_the_same():
    rng = np.random.default_rng(0)
    cfg = small_config()
    x = images(rng, 4, cfg)
    y = tf.zeros([4], tf.int32)
    losses = {}
    for setting in (True, False):
        model = FlowPP(cfg)
        model.initialize(x)
        assert model.graph_optimizer is False
        model.graph_optimizer = setting
        losses[setting], traces = _losses_and_settings(model, (x, y))
        assert traces == [not setting]  # traced once, inside the first call
    np.testing.assert_allclose(losses[False], losses[True], rtol=1e-5)

    glow_cfg = tfglow.GlowConfig(image_size=8, n_levels=2, depth=1, width=8)
    glow = tfglow.Glow(glow_cfg)
    glow_x = tf.constant(rng.integers(0, 256, (4,) + glow_cfg.image_shape), tf.uint8)
    glow.initialize(glow_x)
    _, traces = _losses_and_settings(glow, (glow_x, y), steps=2)
    assert traces == [False]


def test_flowpp_evaluation_functions_run_without_grappler(monkeypatch):
    from tfglow import evaluation

    rng = np.random.default_rng(1)
    cfg = small_config()
    x = images(rng, 3, cfg)
    y = tf.zeros([3], tf.int32)
    seen = []
    terms_fn, iw_fn = evaluation.per_image_terms, evaluation.importance_weighted_bits
    monkeypatch.setattr(evaluation, "per_image_terms",
                        lambda *a: (seen.append(grappler_disabled()), terms_fn(*a))[1])
    monkeypatch.setattr(evaluation, "importance_weighted_bits",
                        lambda *a: (seen.append(grappler_disabled()), iw_fn(*a))[1])
    bits = {}
    for setting in (False, True):
        model = FlowPP(cfg)
        model.initialize(x)
        model.graph_optimizer = setting
        seen.clear()
        bits[setting] = (evaluation.compiled_terms(model)(x, y)["bits_x"].numpy(),
                         evaluation.compiled_importance_weighted(model)(x, y, 2).numpy())
        # Both traced inside their calls, with the setting (the second also traces terms).
        assert len(seen) >= 2 and set(seen) == {not setting}
    np.testing.assert_allclose(bits[False][0], bits[True][0], rtol=1e-6)
    np.testing.assert_allclose(bits[False][1], bits[True][1], rtol=1e-6)
