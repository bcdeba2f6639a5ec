"""Mixed precision (Glow(precision="mixed_bfloat16")): coupling networks in bfloat16."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow
from test_model import small_config, trained_like


def _loss_and_grads(model, x, noise):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss_terms(x, noise=noise)["loss"])
    return float(loss), tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("coupling", [0, 1])
def test_bfloat16_networks_stay_invertible_and_close_to_float32(coupling, rng):
    cfg = small_config(image_size=8, n_channels=3, n_levels=2, depth=2, width=32,
                       flow_coupling=coupling, flow_permutation=3)
    model = trained_like(cfg, rng)
    x = tf.constant(rng.integers(0, 256, size=(8,) + cfg.image_shape, dtype=np.uint8))
    noise = tf.constant(rng.uniform(size=(8,) + cfg.image_shape).astype(np.float32))
    loss32, grads32 = _loss_and_grads(model, x, noise)
    assert 1.0 < loss32 < 20.0  # a sane model, so the comparison means something

    model.precision = "mixed_bfloat16"
    assert all(s.coupling.nn.nn_dtype == tf.bfloat16 for s in model.flow_steps)
    loss16, grads16 = _loss_and_grads(model, x, noise)
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    for g32, g16, v in zip(grads32, grads16, model.trainable_variables):
        assert g16.dtype == tf.float32, v.path
        a, b = g32.numpy().ravel(), g16.numpy().ravel()
        if np.linalg.norm(a) > 1e-6:
            cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            assert cosine > 0.98, (v.path, cosine)

    # Decoding recomputes NN(z1) on the same z1 in bfloat16: still an exact inverse.
    xf = tfglow.objective.dequantize(model.preprocess(x), cfg.n_bits_x, seed=[0, 1])
    flat, logdet = model.forward(xf)
    assert flat.dtype == logdet.dtype == tf.float32
    back, _ = model.inverse(flat)
    np.testing.assert_allclose(back.numpy(), xf.numpy(), atol=1e-4)


def test_precision_is_checked():
    model = tfglow.Glow(small_config(depth=1))
    with pytest.raises(ValueError, match="precision='float16'"):
        model.precision = "float16"
    assert model.precision == "float32"
