"""Bad input raises a clear error naming the argument and what was expected."""
import numpy as np
import pytest
import tensorflow as tf

import tfglow


@pytest.fixture(scope="module")
def model():
    cfg = tfglow.GlowConfig(image_size=8, n_levels=2, depth=1, width=8, ycond=True, n_y=5,
                            learntop=True)
    return tfglow.Glow(cfg)


def test_non_uint8_images_are_refused(model):
    with pytest.raises(TypeError, match=r"x_uint8 must be uint8 images .* got dtype float32"):
        model.bits_per_dim(np.zeros((2, 8, 8, 3), np.float32), y=[0, 1])
    with pytest.raises(TypeError, match="x_uint8 must be uint8"):
        model.initialize(tf.zeros((2, 8, 8, 3), tf.int32))


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (2, 8, 8, 1), (8, 8, 3)])
def test_images_of_the_wrong_shape_are_refused(model, shape):
    with pytest.raises(ValueError, match=r"x_uint8 must have shape \[B, 8, 8, 3\].*n_channels=3"):
        model.bits_per_dim(np.zeros(shape, np.uint8), y=[0, 1])


def test_encode_wants_preprocessed_floats(model):
    with pytest.raises(TypeError, match="preprocessed float"):
        model.encode(np.zeros((2, 8, 8, 3), np.uint8), y=[0, 1])


@pytest.mark.parametrize("labels, error, fragment", [
    (None, ValueError, "y is required"),
    ([0, 5], ValueError, r"outside \[0, n_y=5\): \[5\]"),
    ([-1, 0], ValueError, r"outside \[0, n_y=5\): \[-1\]"),
    ([0.0, 1.0], TypeError, "int labels"),
    ([0, 1, 2], ValueError, r"shape \[B\] = \[2\]"),
])
def test_bad_labels_are_refused(model, labels, error, fragment):
    with pytest.raises(error, match=fragment):
        model.bits_per_dim(np.zeros((2, 8, 8, 3), np.uint8), y=labels)


def test_bad_labels_inside_tf_function_fail_with_the_same_message(model):
    f = tf.function(lambda x, y: model.bits_per_dim(x, y))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside \[0, n_y=5\)"):
        f(tf.zeros((2, 8, 8, 3), tf.uint8), tf.constant([0, 7]))


def test_latents_of_the_wrong_shapes_are_refused(model):
    good = [tf.zeros((2,) + s) for s in model.latent_shapes]
    with pytest.raises(ValueError, match=r"list of 2 latents"):
        model.decode(good[:1], y=[0, 1])
    with pytest.raises(ValueError, match=r"zs\[1\] must have shape \[B, 2, 2, 24\]"):
        model.decode([good[0], tf.zeros((2, 2, 2, 12))], y=[0, 1])
    with pytest.raises(ValueError, match=r"same B"):
        model.decode([good[0], tf.zeros((3, 2, 2, 24))], y=[0, 1])
    with pytest.raises(ValueError, match="list of 2 latents"):
        model.decode(tf.zeros((2, 192)), y=[0, 1])


def test_config_errors_come_before_any_computation():
    with pytest.raises(ValueError, match="image_size=20 must be divisible"):
        tfglow.Glow(tfglow.GlowConfig(image_size=20, n_levels=3))
    with pytest.raises(TypeError, match="expected a GlowConfig"):
        tfglow.Glow({"image_size": 32})


def test_sample_needs_labels_for_a_conditional_model(model):
    with pytest.raises(ValueError, match="pass y"):
        model.sample(2)
    assert model.sample(2, y=[1, 4]).shape == (2, 8, 8, 3)
