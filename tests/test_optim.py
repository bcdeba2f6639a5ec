"""tfglow.optim against NumPy references of the original optim.py / train.py formulas.

The MirroredStrategy check runs in a subprocess (this file executed as a script), because the
2 logical CPU devices must be configured before TensorFlow initialises its runtime.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfglow.optim as O  # noqa: E402

SHAPES = [(3, 2), (4,), ()]
ATOL = 1e-6
RTOL = 1e-6  # float32 state vs a float64 reference: 1e-6 absolute or relative


def _init_values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in SHAPES]


def _grad_seq(n_steps, seed=1):
    rng = np.random.default_rng(seed)
    # Mix of signs and magnitudes; a few exact zeros exercise eps / the max() branch.
    out = []
    for _ in range(n_steps):
        gs = [rng.normal(scale=rng.choice([0.1, 1.0, 5.0]), size=s).astype(np.float32) for s in SHAPES]
        gs[1][0] = 0.0
        out.append(gs)
    return out


def np_reference(kind, w0, grads, lrs, beta1, beta2, weight_decay=1.0, eps=1e-8,
                 polyak_decay=None, zero_debias=False):
    """The original formulas in float64 (optim.py adam/adamax + TF1 ExponentialMovingAverage)."""
    decay = beta2 if polyak_decay is None else polyak_decay
    w = [x.astype(np.float64) for x in w0]
    m1 = [np.zeros_like(x) for x in w]
    m2 = [np.zeros_like(x) for x in w]
    avg = [x.copy() for x in w]  # TF1: the average of a Variable starts at its value
    biased = [np.zeros_like(x) for x in w]
    for t, (gs, lr) in enumerate(zip(grads, lrs), start=1):
        lr_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        for i, g in enumerate(gs):
            g = g.astype(np.float64)
            if beta1 > 0:
                m1[i] = beta1 * m1[i] + (1 - beta1) * g
                m1_new = m1[i]
            else:
                m1_new = g
            if kind == "adamax":
                m2[i] = np.maximum(beta2 * m2[i], np.abs(g))
                delta = m1_new / (m2[i] + eps)
            else:
                m2[i] = beta2 * m2[i] + (1 - beta2) * g * g
                delta = m1_new / (np.sqrt(m2[i]) + eps)
            w[i] = weight_decay * w[i] - lr_t * delta
            if zero_debias:  # TF1 zero-debiased EMA of a tensor
                biased[i] = biased[i] - (biased[i] - w[i]) * (1 - decay)
                avg[i] = biased[i] / (1 - decay ** t)
            else:  # TF1 EMA of a variable: avg -= (avg - w) * (1 - decay)
                avg[i] = avg[i] - (avg[i] - w[i]) * (1 - decay)
    return dict(w=w, m1=m1, m2=m2, avg=avg)


def _make_vars(values, keras_vars=True):
    if keras_vars:
        return [keras.Variable(v, name=f"w{i}") for i, v in enumerate(values)]
    return [tf.Variable(v, name=f"w{i}") for i, v in enumerate(values)]


def _compiled_step(opt, variables):
    @tf.function
    def step(lr, grads):
        opt.set_learning_rate(lr)
        opt.apply_gradients(zip(grads, variables))
    return step


def _run(opt, variables, grads, lrs):
    opt.build(variables)
    step = _compiled_step(opt, variables)
    for gs, lr in zip(grads, lrs):
        step(tf.constant(lr, tf.float32), [tf.constant(g) for g in gs])
    return step


def _slots(opt, variables, name):
    return [opt.slot(name, v).numpy() for v in variables]


def _assert_close(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}[{i}]")


# ------------------------------------------------------------------------ helpers of train.py

def test_schedule_helpers():
    assert O.polyak_beta2(782, 1) == pytest.approx(1 - 1 / 782)
    assert O.polyak_beta2(100, 0.5) == pytest.approx(1 - 1 / 50)
    with pytest.raises(ValueError):
        O.polyak_beta2(1, 1)
    # train_its = ceil(n_train / (n_batch_train * world_size)) as the original get_its
    assert O.num_train_its(50000, 64, 1) == 782
    assert O.num_train_its(50000, 64, 8) == 98
    # lr ramps from 0 with n_processed counted before the step
    assert O.warmup_lr(1e-3, 0, 50000, 10) == 0.0
    assert O.warmup_lr(1e-3, 250000, 50000, 10) == pytest.approx(5e-4)
    assert O.warmup_lr(1e-3, 10 ** 7, 50000, 10) == pytest.approx(1e-3)
    assert O.warmup_lr(1e-3, 5, 50000, 0) == 1e-3
    t = O.warmup_lr(tf.constant(1e-3), tf.constant(250000), 50000, 10)
    assert float(t) == pytest.approx(5e-4)


# ------------------------------------------------------------------------ optimizer numerics

@pytest.mark.parametrize("kind,beta1,weight_decay,keras_vars", [
    ("adamax", 0.9, 1.0, True),
    ("adamax", 0.0, 0.999, False),
    ("adam", 0.9, 0.995, True),
    ("adam", 0.0, 1.0, False),
])
def test_matches_numpy_reference(kind, beta1, weight_decay, keras_vars):
    n = 6
    beta2 = O.polyak_beta2(train_its=20, polyak_epochs=1.5)  # 1 - 1/30
    lrs = [O.warmup_lr(0.05, k * 8, 40, 0.5) for k in range(n)]  # 0, .02, .04, .05, ...
    grads = _grad_seq(n)
    w0 = _init_values()
    variables = _make_vars(w0, keras_vars)
    opt = (O.Adamax if kind == "adamax" else O.Adam)(
        learning_rate=0.05, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
    step = _run(opt, variables, grads, lrs)
    # learning rate changed every step inside the compiled step: one trace only
    assert step.experimental_get_tracing_count() == 1
    ref = np_reference(kind, w0, grads, lrs, beta1, beta2, weight_decay)
    _assert_close([v.numpy() for v in variables], ref["w"], "w")
    _assert_close(_slots(opt, variables, "m2"), ref["m2"], "m2")
    if beta1 > 0:
        _assert_close(_slots(opt, variables, "m1"), ref["m1"], "m1")
    else:
        assert all(opt.slot("m1", v) is None for v in variables)
    _assert_close(opt.polyak.values(variables), ref["avg"], "polyak")
    assert int(opt.iterations) == n


def test_make_optimizer_and_config():
    opt = O.make_optimizer("adam", lr=2e-3, beta1=0.5, train_its=10, polyak_epochs=2,
                           weight_decay=0.9)
    assert isinstance(opt, O.Adam)
    assert opt.beta2 == pytest.approx(0.95) and opt.polyak_decay == pytest.approx(0.95)
    cfg = opt.get_config()
    clone = O.Adam.from_config(cfg)
    assert (clone.beta1, clone.beta2, clone.decay_factor) == (0.5, opt.beta2, 0.9)
    assert clone.weight_decay is None  # Keras' decoupled decay stays off
    with pytest.raises(ValueError):
        O.make_optimizer("adam2", train_its=10)


# ------------------------------------------------------------------------ Polyak averaging

def _tf1_ema_sequence(w_seq, w0, decay, zero_debias_tensor):
    """Drive TF1's own ExponentialMovingAverage(zero_debias=True) over a weight sequence."""
    g = tf.Graph()
    with g.as_default():
        v = tf.compat.v1.Variable(w0, use_resource=True)
        value = tf.compat.v1.placeholder(tf.float32, w0.shape)
        assign = v.assign(value)
        ema = tf.compat.v1.train.ExponentialMovingAverage(decay=decay, zero_debias=True)
        target = tf.identity(v) if zero_debias_tensor else v
        apply = ema.apply([target])
        avg = ema.average(target)
        out = []
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for w in w_seq:
                sess.run(assign, {value: w})
                sess.run(apply)
                out.append(sess.run(avg))
    return out


@pytest.mark.parametrize("zero_debias", [False, True])
def test_polyak_matches_tf1_ema_and_numpy(zero_debias):
    n = 5
    decay = 0.8
    w0 = _init_values()
    grads = _grad_seq(n, seed=3)
    variables = _make_vars(w0)
    opt = O.Adamax(0.1, beta1=0.9, beta2=0.95, polyak_decay=decay,
                   polyak_zero_debias=zero_debias)
    opt.build(variables)
    step = _compiled_step(opt, variables)
    seq_w, seq_avg = [], []
    for gs in grads:
        step(tf.constant(0.1), [tf.constant(g) for g in gs])
        seq_w.append(variables[0].numpy().copy())
        seq_avg.append(opt.polyak.values([variables[0]])[0].numpy())
    ref = np_reference("adamax", w0, grads, [0.1] * n, 0.9, 0.95, polyak_decay=decay,
                       zero_debias=zero_debias)
    _assert_close(opt.polyak.values(variables), ref["avg"], "polyak")
    tf1 = _tf1_ema_sequence(seq_w, w0[0], decay, zero_debias)
    for k in range(n):
        np.testing.assert_allclose(seq_avg[k], tf1[k], rtol=0, atol=ATOL, err_msg=f"step {k}")
    # averaging genuinely lags the raw weights
    assert not np.allclose(seq_avg[-1], seq_w[-1], atol=1e-4)


def test_polyak_swap_restores_exactly_and_export():
    w0 = _init_values()
    variables = _make_vars(w0)
    opt = O.Adam(0.05, beta1=0.9, beta2=0.9)
    # before any step the averages are the raw weights
    opt.build(variables)
    _assert_close(opt.polyak.values(variables), w0, "pre-step values")
    _run(opt, variables, _grad_seq(3), [0.05] * 3)
    raw = [v.numpy().copy() for v in variables]
    avg = [a.numpy() for a in opt.polyak.values(variables)]
    with opt.polyak.swapped(variables):
        for v, a in zip(variables, avg):
            np.testing.assert_array_equal(v.numpy(), a)
    for v, r in zip(variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    # exception inside the block: raw weights still restored, exception propagates
    with pytest.raises(RuntimeError, match="boom"):
        with opt.polyak.swapped():  # default: all variables the optimizer was built with
            np.testing.assert_array_equal(variables[1].numpy(), avg[1])
            raise RuntimeError("boom")
    for v, r in zip(variables, raw):
        np.testing.assert_array_equal(v.numpy(), r)
    # averages untouched by swapping
    for a, b in zip(opt.polyak.values(variables), avg):
        np.testing.assert_array_equal(a.numpy(), b)
    # unknown variable -> clear error
    with pytest.raises(KeyError, match="not one the optimizer was built with"):
        opt.polyak.average_of(tf.Variable(1.0))
    # export
    opt.polyak.assign_average_to(variables[:2])
    np.testing.assert_array_equal(variables[0].numpy(), avg[0])
    np.testing.assert_array_equal(variables[2].numpy(), raw[2])


def test_one_update_per_shape_group_not_per_variable():
    """The compiled update's arithmetic grows with the number of distinct variable shapes, not
    with the number of variables; a Glow's depth changes neither (its levels' weights are
    stacked variables, tfglow.stacked)."""
    import tfglow

    def update_ops(variables):
        opt = O.Adamax(0.01, beta2=0.9)
        opt.build(variables)
        step = tf.function(lambda: opt.apply_gradients(
            zip([tf.ones_like(v) for v in variables], variables)))
        graph = step.get_concrete_function().graph
        count = sum(n.type == "Maximum" for n in graph.get_operations())  # Adamax's m2
        return count, len(opt._groups)

    def plain(n):
        return [keras.Variable(tf.zeros(shape)) for shape in [(3,), (2, 2), (4, 1)]
                for _ in range(n)]

    assert update_ops(plain(2)) == update_ops(plain(6)) == (3, 3)

    def glow(depth):
        model = tfglow.Glow(tfglow.GlowConfig(image_size=8, n_levels=2, depth=depth, width=4,
                                              n_channels=1))
        model(tf.zeros([1, 8, 8, 1], tf.uint8))
        return model.trainable_variables

    small, big = glow(2), glow(6)
    assert len(small) == len(big)
    count, groups = update_ops(big)
    assert update_ops(small) == (count, groups) and count == groups <= len(big)


def test_polyak_off():
    w0 = _init_values()
    variables = _make_vars(w0)
    opt = O.Adamax(0.05, beta2=0.9, polyak=False)
    _run(opt, variables, _grad_seq(2), [0.05] * 2)
    assert not opt.polyak.enabled and opt.polyak.averages == []
    assert not any("polyak" in v.path for v in opt.variables)
    raw = [v.numpy().copy() for v in variables]
    with opt.polyak.swapped(variables):
        for v, r in zip(variables, raw):
            np.testing.assert_array_equal(v.numpy(), r)
    ref = np_reference("adamax", w0, _grad_seq(2), [0.05] * 2, 0.9, 0.9)
    _assert_close(raw, ref["w"], "w")


# ------------------------------------------------------------------------ checkpoint / resume

@pytest.mark.parametrize("zero_debias,beta1,polyak", [
    (False, 0.9, True), (True, 0.9, True), (False, 0.0, False)])
def test_checkpoint_resume_is_exact(tmp_path, zero_debias, beta1, polyak):
    n1, n2 = 3, 4
    grads = _grad_seq(n1 + n2, seed=5)
    lrs = [0.01 * (k + 1) for k in range(n1 + n2)]
    kw = dict(learning_rate=0.01, beta1=beta1, beta2=0.9, weight_decay=0.99,
              polyak=polyak, polyak_zero_debias=zero_debias)

    # uninterrupted
    va = _make_vars(_init_values())
    oa = O.Adamax(**kw)
    _run(oa, va, grads, lrs)

    # interrupted: run n1, save, fresh objects, restore, run n2
    vb = _make_vars(_init_values())
    ob = O.Adamax(**kw)
    _run(ob, vb, grads[:n1], lrs[:n1])
    path = tf.train.Checkpoint(vars=vb, optimizer=ob).save(str(tmp_path / "ckpt"))
    vc = _make_vars([np.zeros(s, np.float32) for s in SHAPES])
    oc = O.Adamax(**kw)
    oc.build(vc)
    tf.train.Checkpoint(vars=vc, optimizer=oc).restore(path).assert_consumed()
    assert int(oc.iterations) == n1
    _run(oc, vc, grads[n1:], lrs[n1:])

    for a, c in zip(va, vc):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    for name in ("m1", "m2") if beta1 > 0 else ("m2",):
        for a, c in zip(_slots(oa, va, name), _slots(oc, vc, name)):
            np.testing.assert_array_equal(a, c)
    for a, c in zip(oa.polyak.values(va), oc.polyak.values(vc)):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert int(oa.iterations) == int(oc.iterations) == n1 + n2


# ------------------------------------------------------------------------ MirroredStrategy

MIRRORED_LRS = [0.02, 0.03]


def _mirrored_base_grads():
    rng = np.random.default_rng(7)
    return [rng.normal(size=s).astype(np.float32) for s in SHAPES]


def _mirrored_worker():
    """Run in a fresh interpreter: 2 logical CPUs, per-replica gradients (r+1) * base."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    base = _mirrored_base_grads()
    with strategy.scope():
        variables = _make_vars(_init_values())
        opt = O.Adamax(0.01, beta1=0.9, beta2=0.9, weight_decay=0.999)
        opt.build(variables)

    @tf.function
    def step(lr):
        def replica_fn():
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            scale = tf.cast(rid + 1, tf.float32)
            grads = [tf.constant(b) * scale for b in base]
            opt.set_learning_rate(lr)  # inside the compiled, replicated step
            opt.apply_gradients(zip(grads, variables))
        strategy.run(replica_fn)

    for lr in MIRRORED_LRS:
        step(tf.constant(lr))
    out = {"traces": int(step.experimental_get_tracing_count())}
    for name, vals in [("w", variables), ("m1", [opt.slot("m1", v) for v in variables]),
                       ("m2", [opt.slot("m2", v) for v in variables]),
                       ("avg", opt.polyak.values(variables))]:
        out[name] = [np.asarray(tf.convert_to_tensor(x)).tolist() for x in vals]
    # every replica holds the same values
    out["replicas_equal"] = all(
        np.array_equal(c.numpy(), variables[i].value.values[0].numpy())
        for i, v in enumerate(variables) for c in v.value.values)
    # swapping works on mirrored variables (eager, cross-replica)
    raw = [v.numpy().copy() for v in variables]
    with opt.polyak.swapped(variables):
        out["swapped_ok"] = all(
            np.array_equal(c.numpy(), a.numpy())
            for v, a in zip(variables, opt.polyak.values(variables)) for c in v.value.values)
    out["restored_ok"] = all(np.array_equal(c.numpy(), r)
                             for v, r in zip(variables, raw) for c in v.value.values)
    print("RESULT " + json.dumps(out))


def test_mirrored_strategy_matches_single_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "mirrored"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=repo)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"mirrored worker failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["traces"] == 1
    assert out["replicas_equal"] and out["swapped_ok"] and out["restored_ok"]

    # single device, gradient = mean over replicas of (r+1)*base = 1.5*base
    base = _mirrored_base_grads()
    variables = _make_vars(_init_values())
    opt = O.Adamax(0.01, beta1=0.9, beta2=0.9, weight_decay=0.999)
    mean_grads = [1.5 * b for b in base]
    _run(opt, variables, [mean_grads] * len(MIRRORED_LRS), MIRRORED_LRS)
    _assert_close([np.array(x) for x in out["w"]], [v.numpy() for v in variables], "w")
    _assert_close([np.array(x) for x in out["m1"]], _slots(opt, variables, "m1"), "m1")
    _assert_close([np.array(x) for x in out["m2"]], _slots(opt, variables, "m2"), "m2")
    _assert_close([np.array(x) for x in out["avg"]],
                  [a.numpy() for a in opt.polyak.values(variables)], "avg")
    ref = np_reference("adamax", _init_values(), [mean_grads] * len(MIRRORED_LRS), MIRRORED_LRS,
                       0.9, 0.9, 0.999)
    _assert_close([np.array(x) for x in out["w"]], ref["w"], "w vs numpy")


if __name__ == "__main__" and sys.argv[1:] == ["mirrored"]:
    _mirrored_worker()


def test_a_variable_without_gradient_keeps_its_value_and_slots():
    """Keras drops (None, v) pairs; in a shape group the other rows update, this one not."""
    variables = [keras.Variable(np.full([2, 3], float(i), np.float32)) for i in range(3)]
    opt = O.Adamax(0.05, beta2=0.9)
    opt.build(variables)
    assert len(opt._groups) == 1  # one stack holds all three
    g = np.ones([2, 3], np.float32)
    step = tf.function(lambda: opt.apply_gradients(
        [(tf.constant(g), variables[0]), (None, variables[1]), (tf.constant(g), variables[2])]))
    step()
    step()
    np.testing.assert_array_equal(variables[1].numpy(), np.full([2, 3], 1.0))
    np.testing.assert_array_equal(opt.slot("m2", variables[1]).numpy(), 0.0)
    np.testing.assert_array_equal(opt.slot("polyak", variables[1]).numpy(), 0.0)
    ref = np_reference("adamax", [np.zeros([2, 3], np.float32)], [[g], [g]], [0.05, 0.05],
                       0.9, 0.9)
    _assert_close([variables[0].numpy()], ref["w"], "w0")
    _assert_close([variables[2].numpy() - 2.0], ref["w"], "w2")


def test_eager_steps_use_their_own_bias_correction():
    """Eager apply_gradients recomputes t: each step's update equals that of a fresh
    optimizer restored to that step (the per-apply scalars once stayed those of step 1)."""
    g = tf.constant([0.5, -1.0, 2.0])
    var = keras.Variable(tf.constant([1.0, 2.0, 3.0]))
    opt = O.make_optimizer("adamax", lr=0.1, train_its=10, polyak=False)
    opt.build([var])
    for _ in range(3):
        before = var.numpy()
        m1, m2, t = opt.slot("m1", var).numpy(), opt.slot("m2", var).numpy(), \
            int(opt.iterations.numpy()) + 1
        opt.apply_gradients([(g, var)])
        b1, b2 = opt.beta1, opt.beta2
        m1 = b1 * m1 + (1 - b1) * g.numpy()
        m2 = np.maximum(b2 * m2, np.abs(g.numpy()))
        lr_t = 0.1 * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        np.testing.assert_allclose(var.numpy(), before - lr_t * m1 / (m2 + opt.epsilon),
                                   rtol=1e-5, err_msg=f"step {t}")
