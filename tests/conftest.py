"""Shared test setup: quiet TF, two logical CPU devices (for tf.distribute tests), helpers."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import tfglow` sets (tfglow/__init__.py)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs so MirroredStrategy tests can run 2 replicas on one CPU. This must happen
# before TensorFlow initialises its devices, hence at import of conftest.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # devices already initialised by an earlier import
    pass


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def perturb(layer, rng, scale=0.05):
    """Makes a layer look trained: adds N(0, scale) to every float trainable variable.

    Zero-initialised parts (coupling outputs, priors) become non-trivial, so the tests see
    real scales, shifts and rotations instead of identities. LU-decomposed 1x1 convolutions
    are perturbed in W (then re-factorised): independent noise on L and U would make W
    exponentially ill-conditioned in C, which training does not do.
    """
    from tfglow import stacked
    from tfglow.invconv import LUInvConv1x1

    lu_layers = [l for l in [layer, *layer._flatten_layers()] if isinstance(l, LUInvConv1x1)]
    # (a Glow's LU weights are rows of the level's stacked variables: skip those variables)
    skip = {id(v) for l in lu_layers for v in stacked.weight_variables(l) if v.trainable}
    for l in {id(l): l for l in lu_layers}.values():
        w = l.weight().numpy()
        l.set_from_matrix(w + rng.normal(0.0, scale / 3, size=w.shape))
    # In the order (and shapes) of one variable per flow step, so a Glow draws the same noise
    # as before its levels' weights were stacked (tfglow.stacked): the same test models.
    for v, row in stacked.per_step_layout(layer):
        if id(v) in skip:
            continue
        if row is None:
            v.assign(v + rng.normal(0.0, scale, size=v.shape).astype(np.float32))
        else:
            noise = rng.normal(0.0, scale, size=v.shape[1:]).astype(np.float32)
            v.assign(tf.tensor_scatter_nd_add(v, [[row]], noise[None]))


def flat_jacobian_logdet(fn, x):
    """log|det J| per example of fn: [B, ...] -> [B, ...] (same size) by autodiff, float64."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    jac = tape.batch_jacobian(y, x)
    b = int(x.shape[0])
    d = int(np.prod(x.shape[1:]))
    jac = tf.reshape(tf.cast(jac, tf.float64), [b, int(np.prod(y.shape[1:])), d])
    return tf.linalg.slogdet(jac)[1].numpy()
