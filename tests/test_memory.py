"""Gradient modes of the flow steps (tfglow.memory): 0 backprop, 1 checkpointing, 2 reversible.

All modes must give the same loss and, within float32 tolerance, the same gradient for every
variable, eagerly and in a tf.function; mode 2 must not keep any step's activations for the
backward pass, and mode 1 only the steps' inputs. The trainer's XLA step gives the same loss
and gradients in every mode.
"""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from test_model import images, small_config, trained_like
from tfglow import memory
from tfglow.memory import GRADIENT_MODES, check_gradient_mode, chunks
from tfglow.optim import make_optimizer
from tfglow.training.distribute import make_runtime
from tfglow.training.step import TrainStep

#: Largest relative gradient error, max|g - g_0| / max|g_0| per variable, against mode 0.
#: Mode 1 recomputes the same float32 ops from the same inputs (measured: 0, bitwise equal).
#: Mode 2 recomputes from inputs reconstructed by the inverses, so their float32 rounding
#: error enters; measured worst over the configurations below: 1.3e-6 (8 px, depth 8), 3.1e-6
#: at 16 px with 3 levels of depth 8, 7e-5 at 16 px with 2 levels of depth 32 (chains of 16,
#: memory.MAX_REVERSIBLE_CHAIN; one chain of 32 steps: up to 0.26, see there).
GRAD_RTOL = {1: 1e-6, 2: 2e-5}

CONFIGS = {
    "affine_invconv": dict(flow_coupling=1, flow_permutation=2),
    "affine_lu": dict(flow_coupling=1, flow_permutation=3),
    "additive_shuffle": dict(flow_coupling=0, flow_permutation=1),
    "additive_reverse": dict(flow_coupling=0, flow_permutation=0),
    "ycond_classifier": dict(flow_coupling=1, flow_permutation=2, ycond=True, weight_y=0.5,
                             n_bits_x=5),
}


def batch(cfg, rng, n=4):
    x = images(rng, n, cfg)
    noise = rng.uniform(size=(n,) + cfg.image_shape).astype(np.float32)
    y = rng.integers(0, cfg.n_y, size=n).astype(np.int32) if cfg.ycond else None
    return x, noise, y


def loss_and_gradients(model, x, noise, y):
    """(mean loss, [gradient per trainable variable]) of the training objective."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss_terms(x, y, noise=noise)["loss"])
    return loss, tape.gradient(loss, model.trainable_variables)


def relative_errors(grads, reference):
    """max|g - g_ref| / max|g_ref| per variable (None gradients must match)."""
    errors = []
    for g, ref in zip(grads, reference):
        assert (g is None) == (ref is None)
        if ref is not None:
            g, ref = tf.convert_to_tensor(g).numpy(), tf.convert_to_tensor(ref).numpy()
            errors.append(np.abs(g - ref).max() / max(np.abs(ref).max(), 1e-30))
    return np.array(errors)


def check_modes_agree(model, run, loss_atol):
    """Runs `run()` in modes 0, 1, 2 and checks the loss and every variable's gradient."""
    results = {}
    for mode in GRADIENT_MODES:
        model.gradient_checkpointing = mode
        results[mode] = run()
    loss0, grads0 = results[0]
    assert len(grads0) == len(model.trainable_variables)
    assert all(g is not None for g in grads0)
    for mode in (1, 2):
        loss, grads = results[mode]
        assert abs(float(loss) - float(loss0)) <= loss_atol, mode
        errors = relative_errors(grads, grads0)
        names = [v.path for v in model.trainable_variables]
        assert errors.max() <= GRAD_RTOL[mode], (mode, names[int(errors.argmax())], errors.max())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_modes_give_the_same_loss_and_gradients_eagerly(name, rng):
    cfg = small_config(image_size=8, n_levels=2, depth=8, width=16, **CONFIGS[name])
    model = trained_like(cfg, rng)
    x, noise, y = batch(cfg, rng)
    # Eagerly every mode runs the same kernels on the same values: the loss is bitwise equal.
    check_modes_agree(model, lambda: loss_and_gradients(model, x, noise, y), loss_atol=0.0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_modes_give_the_same_loss_and_gradients_in_a_tf_function(name, rng):
    # One level of two steps keeps tracing short; several levels (split gradients joining
    # the chain's output gradient) run the same code and are checked eagerly above.
    cfg = small_config(image_size=8, n_levels=1, depth=2, width=16, **CONFIGS[name])
    model = trained_like(cfg, rng)
    x, noise, y = batch(cfg, rng)
    # A fresh tf.function per mode (the mode is read at tracing). Graph optimisations may fuse
    # ops differently per mode, hence a 1e-6 tolerance on the loss (a few bits/dim).
    check_modes_agree(
        model, lambda: tf.function(loss_and_gradients, autograph=False)(model, x, noise, y),
        loss_atol=1e-6)


def test_gradient_mode_attribute_and_bad_values():
    cfg = small_config(image_size=8, n_levels=2, depth=1, width=8)
    assert tfglow.Glow(cfg).gradient_checkpointing == 0
    model = tfglow.Glow(cfg, gradient_checkpointing=2)
    assert model.gradient_checkpointing == 2
    model.gradient_checkpointing = 1
    assert model.gradient_checkpointing == 1
    for bad in (3, -1, "2", None, True, 1.5):
        with pytest.raises(ValueError, match="gradient_checkpointing"):
            check_gradient_mode(bad)
        with pytest.raises(ValueError, match="gradient_checkpointing"):
            model.gradient_checkpointing = bad
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        tfglow.Glow(cfg, gradient_checkpointing=4)


@pytest.mark.parametrize("mode", [1, 2])
def test_data_dependent_init_is_the_same_in_every_mode(mode, rng):
    cfg = small_config(image_size=8, n_levels=2, depth=2, width=8)
    x = images(rng, 16, cfg)
    plain, other = tfglow.Glow(cfg), tfglow.Glow(cfg, gradient_checkpointing=mode)
    assert plain.initialize(x) and other.initialize(x)
    for a, b in zip(plain.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ----------------------------------------------------------------- memory, structurally
def saved_activation_bytes(model, x, noise, y):
    """Bytes of forward-pass activations the backward pass of a tf.function reads.

    CPU TensorFlow has no allocator statistics (get_memory_info raises for CPU:0), so we
    check the structure instead: the gradient graph of a training step is built after the
    forward graph, so graph operations created by `tape.gradient` are the backward pass, and a
    forward tensor that any of them reads is kept alive from the forward to the backward
    pass (all others are freed as soon as their forward consumers ran). Counting the float
    activations among them ([B, ...] tensors) measures what each mode stores, independent of
    timing and of the machine; it is what memory_saving_gradients and RevNets reason about.

    With the steps of a level in one loop (tfglow.scan), two more kinds of stored tensors:
    activations stacked over steps, [n, B, h, w, c] (modes 1 and 2 keep step inputs or chain
    outputs so), and, in mode 0, the loop's accumulators: TensorFlow's gradient of a
    while loop makes the forward loop push every intermediate the backward pass needs to a
    TensorList (one element per iteration; an output of the forward While op, read by the
    backward loop), which we count as element size x the level's depth.
    """
    n_forward = []

    def step(x, noise, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(x, y, noise=noise)["loss"])
        n_forward.append(len(tf.compat.v1.get_default_graph().get_operations()))
        return tape.gradient(loss, model.trainable_variables)

    graph = tf.function(step, autograph=False).get_concrete_function(x, noise, y).graph
    ops = graph.get_operations()                      # in creation order
    forward = {id(op) for op in ops[:n_forward[0]]}
    batch_size = int(x.shape[0])
    saved = {}
    for op in ops[n_forward[0]:]:
        for t in op.inputs:
            if id(t.op) not in forward:
                continue
            if t.dtype == tf.float32 and t.shape.is_fully_defined() and (
                    (t.shape.rank and t.shape[0] == batch_size)
                    or (t.shape.rank == 5 and t.shape[1] == batch_size)):
                saved[t.name] = 4 * t.shape.num_elements()
            elif t.dtype == tf.variant and t.op.type in ("While", "StatelessWhile"):
                saved[t.name] = _accumulator_bytes(t, batch_size) * model.config.depth
    return sum(saved.values())


def _accumulator_bytes(t, batch_size):
    """Bytes of one element of the TensorList output t of a forward While op, if its elements
    are float32 [B, ...] activations (0 otherwise: weights' accumulators, counters)."""
    start = t.op.inputs[t.value_index].op             # where the loop variable was created
    if start.type not in ("EmptyTensorList", "TensorListReserve"):
        return 0
    shape = tf.get_static_value(start.inputs[0])
    if start.get_attr("element_dtype") != tf.float32 or shape is None or np.ndim(shape) != 1:
        return 0
    if len(shape) == 0 or shape[0] != batch_size or (shape < 0).any():
        return 0
    return 4 * int(np.prod(shape))


def test_long_levels_are_cut_into_even_reversible_chains():
    assert [len(c) for c in chunks(range(32), 16)] == [16, 16]
    assert [len(c) for c in chunks(range(20), 16)] == [10, 10]
    assert [len(c) for c in chunks(range(33), 16)] == [11, 11, 11]
    assert [len(c) for c in chunks(range(7), 16)] == [7]
    assert [len(c) for c in chunks(range(7), None)] == [7]
    assert [x for c in chunks(range(33), 16) for x in c] == list(range(33))


def test_reversible_mode_stores_no_activations_of_the_steps_and_checkpointing_only_inputs(
        rng, monkeypatch):
    # Depth 1 vs 2: the extra step per level adds, to what the backward pass reads,
    #   mode 0: every intermediate tensor of the step (coupling network included);
    #   mode 1: exactly the step's input, one [B, h, w, c] boundary;
    #   mode 2: nothing at all.
    base = small_config(image_size=8, n_levels=2, width=16, flow_coupling=1, flow_permutation=2)
    x, noise, y = batch(base, rng)
    x = tf.constant(x)
    noise = tf.constant(noise)
    saved = {}
    for depth in (1, 2):
        model = tfglow.Glow(base.replace(depth=depth))
        for mode in GRADIENT_MODES:
            model.gradient_checkpointing = mode
            saved[mode, depth] = saved_activation_bytes(model, x, noise, y)
    growth = {mode: saved[mode, 2] - saved[mode, 1] for mode in GRADIENT_MODES}
    b = int(x.shape[0])
    # Step inputs: level 0 is [B, 4, 4, 12], level 1 [B, 2, 2, 24].
    boundaries = 4 * b * (4 * 4 * 12 + 2 * 2 * 24)
    assert growth[2] == 0, saved
    assert growth[1] == boundaries, saved
    assert growth[0] > 2 * boundaries, saved   # patches and hidden layers of width 16
    assert saved[2, 2] < saved[1, 2] < saved[0, 2]
    # Chains of one step store each step's output: as many boundaries as mode 1.
    monkeypatch.setattr(memory, "MAX_REVERSIBLE_CHAIN", 1)
    model.gradient_checkpointing = 2
    assert saved_activation_bytes(model, x, noise, y) - saved[2, 1] == boundaries


# ----------------------------------------------------------------- the XLA train step
class RecordingOptimizer:
    """The trainer's optimizer, keeping the gradients of its last update (in variables, so the
    values leave an XLA-compiled step)."""

    def __init__(self, model):
        self.optimizer = make_optimizer("adamax", lr=1e-3, train_its=100)
        self.optimizer.build(model.trainable_variables)
        self.grads = [tf.Variable(tf.zeros_like(v), trainable=False)
                      for v in model.trainable_variables]

    def apply_gradients(self, pairs):
        pairs = list(pairs)
        for recorded, (g, _) in zip(self.grads, pairs):
            recorded.assign(g)
        self.optimizer.apply_gradients(pairs)


@pytest.mark.parametrize("mode", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_xla_train_step_of_a_deep_model_matches_the_graph_step(mode, rng):
    # Three levels: their loops (tfglow.scan) are chained, and so, in mode 0, were their
    # gradient loops, through which d loss / d logdet (a constant) passed unchanged while
    # logdet was a loop variable; tf2xla failed on that ("Cannot find body function
    # while_body_..._grad_..._const_0"). The loops now sum the log-determinants after the loop
    # (tfglow.scan.loop_with_logdets). Modes 1 and 2 have their own backward loops.
    # Additive couplings and reversing (no 1x1 convolution): the fastest XLA compilation.
    cfg = small_config(image_size=8, n_levels=3, depth=2, width=8, flow_coupling=0,
                       flow_permutation=0)
    model = trained_like(cfg, rng)
    model.gradient_checkpointing = mode
    x = tf.constant(images(rng, 4, cfg))
    y = tf.constant(rng.integers(0, cfg.n_y, size=4), tf.int32)
    # The same dequantisation noise for both: XLA's stateless_uniform draws other numbers.
    noises = tf.constant(rng.uniform(size=(2, 4) + cfg.image_shape).astype(np.float32))
    start = [v.numpy() for v in model.trainable_variables]
    results = {}
    for xla in (False, True):
        for v, value in zip(model.trainable_variables, start):
            v.assign(value)
        optimizer = RecordingOptimizer(model)
        step = TrainStep(model, optimizer, make_runtime("none"), seed=5, xla=xla)
        step.noise = lambda x, i: tf.gather(noises, i)
        results[xla] = []
        for i in range(2):
            loss = float(step((x, y), i)["loss"])
            results[xla].append((loss, [g.numpy() for g in optimizer.grads]))
    for (loss, grads), (loss_xla, grads_xla) in zip(results[False], results[True]):
        assert np.isfinite(loss_xla)
        assert loss_xla == pytest.approx(loss, rel=1e-5)
        errors = relative_errors(grads_xla, grads)
        names = [v.path for v in model.trainable_variables]
        assert errors.max() <= 1e-4, (names[int(errors.argmax())], errors.max())
