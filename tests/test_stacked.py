"""tfglow.stacked: a Glow level's steps keep each weight in one [K, ...] variable and read rows."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from tfglow import memory, stacked
from tfglow.actnorm import ActNorm
from tfglow.squeeze import squeeze2d
from tfglow.step import FlowStep

CFG = tfglow.GlowConfig(image_size=8, n_levels=2, depth=3, width=8, n_channels=3,
                        flow_coupling=1, flow_permutation=3, learntop=True, seed=5)


def images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8))


def test_level_weights_are_stacked_and_steps_own_none():
    model = tfglow.Glow(CFG)
    for level, store in enumerate(model.level_weights):
        steps = model.steps_of_level(level)
        assert stacked.store_of(steps) is store
        assert all(not step.variables for step in steps)  # the rows are views, not variables
        assert all(v.shape[0] == CFG.depth for v in store.stacked)
    # Every per-step weight is one row: same parameter count as one variable per step.
    reference = FlowStep(CFG.width, CFG.flow_permutation, CFG.flow_coupling, name="ref")
    reference.build((None, 4, 4, 12))
    per_step = sum(int(np.prod(v.shape)) for v in reference.trainable_variables)
    stacked_level0 = sum(int(np.prod(v.shape)) for v in model.level_weights[0].stacked
                         if v.trainable)
    assert stacked_level0 == CFG.depth * per_step
    # No variable of the deferred build is left for Keras to initialise later.
    from keras.src.backend.common import global_state
    assert not global_state.get_global_attribute("uninitialized_variables", [])


def test_rows_read_and_assign_their_row_only():
    model = tfglow.Glow(CFG)
    store = model.level_weights[0]
    bias = model.flow_steps[1].actnorm.bias
    assert isinstance(bias, stacked.Row) and bias.shape == (12,)
    stacked_bias = next(v for v, p in zip(store.stacked, store.paths) if p == "actnorm/bias")
    before = stacked_bias.numpy().copy()
    value = np.arange(12, dtype=np.float32)
    bias.assign(value)
    after = stacked_bias.numpy()
    np.testing.assert_array_equal(after[1], value)
    np.testing.assert_array_equal(np.delete(after, 1, 0), np.delete(before, 1, 0))
    np.testing.assert_array_equal(bias.numpy(), value)
    np.testing.assert_array_equal((bias * 2.0).numpy(), 2 * value)  # arithmetic as a variable
    np.testing.assert_allclose(tf.exp(bias).numpy(), np.exp(value), rtol=1e-6)
    with stacked.whole_stack():
        assert tf.convert_to_tensor(bias).shape == (CFG.depth, 12)
    with stacked.row_index(tf.constant(2)):
        np.testing.assert_array_equal(tf.convert_to_tensor(bias).numpy(), after[2])


def test_stacked_weights_refuse_layers_of_another_structure():
    a, b = ActNorm(name="a"), ActNorm(name="b")
    a.build((None, 4)), b.build((None, 5))
    with pytest.raises(ValueError, match="b does not have the weights of a"):
        stacked.StackedWeights([a, b], name="s")
    c = ActNorm(name="c")
    c.build((None, 4))
    store = stacked.StackedWeights([a, c], name="t")
    assert [tuple(v.shape) for v in store.stacked] == [(2, 4), (2, 4), (2,)]


def test_per_step_bijectors_compose_to_the_level_loop():
    model = tfglow.Glow(CFG)
    model.initialize(images())
    for v in model.trainable_variables:  # away from the identity-like init
        v.assign(v + 0.02 * tf.sin(13.0 * v + 1.0))
    steps = model.steps_of_level(0)
    x = tf.random.stateless_normal([2, 4, 4, 12], [1, 2])
    y_loop, d_loop = memory.run_flow_steps(steps, x, tf.zeros([2]), mode=0, loop=True)
    y, d = x, tf.zeros([2])
    for step in steps:
        bij = step.bijector()
        d += bij.forward_log_det_jacobian(y, event_ndims=3)
        y = bij.forward(y)
    np.testing.assert_allclose(y.numpy(), y_loop.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.numpy(), d_loop.numpy(), rtol=1e-5)


def test_traced_data_dependent_init_matches_the_eager_one():
    traced, eager = tfglow.Glow(CFG), tfglow.Glow(CFG)
    eager.step_loop = False  # chain_forward, step by step, eagerly
    x = images(8, seed=3)
    assert memory.traced_ddi_applies(traced.steps_of_level(0))
    traced.initialize(x), eager.initialize(x)
    assert all(float(a.initialized.numpy()) == 1.0 for a in traced.actnorm_layers())
    for a, b in zip(traced.variables, eager.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    # and it initialised from the data: the first actnorm standardises the squeezed input
    z = squeeze2d(traced.preprocess(x) + 0.5 / CFG.n_bins)
    assert np.abs(np.mean(traced.flow_steps[0].actnorm.forward(z)[0].numpy(),
                          axis=(0, 1, 2))).max() < 1e-3


def _buffer(t):
    """The address of a CPU tensor's buffer (through DLPack, without a copy)."""
    class _View:
        def __dlpack__(self, **kwargs):
            return tf.experimental.dlpack.to_dlpack(t)

        def __dlpack_device__(self):
            return (1, 0)  # kDLCPU
    return np.from_dlpack(_View()).__array_interface__["data"][0]


def test_weights_and_slots_read_without_copies_after_init_row_access_and_a_step():
    # A gather from or scatter into a variable puts it in TensorFlow's copy-on-read mode for
    # good: every later read (each train step's) copies it. Rows must not do that.
    from tfglow.optim import make_optimizer
    from tfglow.training.distribute import make_runtime
    from tfglow.training.step import TrainStep

    model = tfglow.Glow(CFG)
    model.initialize(images())  # traced data-dependent init: rows read and assigned by index
    step1 = model.flow_steps[1]
    step1.actnorm.bias.assign(step1.actnorm.bias.numpy() + 1.0)  # eager row read and assign
    step1.permutation.set_from_matrix(np.eye(12, dtype=np.float32)[::-1].copy())
    optimizer = make_optimizer("adamax", lr=1e-3, train_its=10)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, make_runtime("none"), seed=0)
    step((images(), tf.zeros([4], tf.int32)), 0)
    variables = [v.value if hasattr(v, "value") else v
                 for v in model.variables + optimizer.variables]
    copied = [v.name for v in variables
              if _buffer(tf.convert_to_tensor(v)) != _buffer(tf.convert_to_tensor(v))]
    assert not copied
