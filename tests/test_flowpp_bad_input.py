"""Flow++ bad input: errors that name the argument at fault."""
import numpy as np
import pytest
import tensorflow as tf

from flowpp_helpers import images, small_config
from tfglow.flowpp import FlowPP, FlowPPConfig
from tfglow.flowpp.coupling import MixLogisticCoupling
from tfglow.flowpp.splits import column_split


@pytest.fixture(scope="module")
def model():
    return FlowPP(small_config())


def test_images_must_be_uint8(model, rng):
    x = images(rng, 2, model.config).astype(np.float32)
    with pytest.raises(TypeError, match="x_uint8 must be uint8"):
        model.bits_per_dim(x)
    with pytest.raises(TypeError, match="x_uint8 must be uint8"):
        model.importance_weighted_bits_per_dim(x, 2)


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (2, 8, 8, 1), (8, 8, 3)])
def test_images_must_have_the_configured_shape(model, shape):
    with pytest.raises(ValueError, match=r"x_uint8 must have shape \[B, 8, 8, 3\]"):
        model.bits_per_dim(np.zeros(shape, np.uint8))


def test_encode_takes_float_pixels_and_decode_the_latent_shape(model):
    with pytest.raises(TypeError, match="x must be float pixel values"):
        model.encode(np.zeros((1, 8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r"zs must hold z of shape \[B, 4, 4, 12\]"):
        model.decode([tf.zeros([1, 8, 8, 3])])


def test_odd_width_for_the_column_split():
    with pytest.raises(ValueError, match="x must have an even width for the column split"):
        column_split(tf.zeros([1, 4, 5, 3]))
    with pytest.raises(ValueError, match="stages: 'column:1' needs an even width"):
        FlowPPConfig(image_size=6, stages=("column:1", "squeeze", "column:1"),
                     dequantization="uniform")
    with pytest.raises(ValueError, match="image_size=7 must be even"):
        FlowPPConfig(image_size=7, stages=("channel:1",))


@pytest.mark.parametrize("k", [0, -3])
def test_components_must_be_at_least_one(k):
    with pytest.raises(ValueError, match=r"components \(K\) = .* must be >= 1"):
        FlowPPConfig(components=k)
    with pytest.raises(ValueError, match=r"components \(K\) = .* must be >= 1"):
        MixLogisticCoupling(components=k)


def test_other_config_errors_name_the_field():
    for kwargs, field in [(dict(coupling="spline"), "coupling"), (dict(heads=5), "heads"),
                          (dict(dequantization="gauss"), "dequantization"),
                          (dict(stages=("column",)), "stages"), (dict(dropout=1.0), "dropout"),
                          (dict(inverse="newton"), "inverse")]:
        with pytest.raises(ValueError, match=field):
            FlowPPConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown Flow\\+\\+ preset"):
        FlowPPConfig.preset("cifar100")
    with pytest.raises(TypeError, match="expected a FlowPPConfig"):
        FlowPP(config={"filters": 8})


def test_dequantizer_context_of_the_wrong_shape(model, rng):
    step = model.dequantizer.steps[0]
    a = tf.zeros([2, 8, 4, 3])
    for bad in (tf.zeros([2, 8, 4, 5]), tf.zeros([2, 4, 4, 8]), tf.zeros([2, 8, 4])):
        with pytest.raises(ValueError, match=r"context must have shape \[B, 8, 4, 8\]"):
            step.forward_pair(a, a, context=bad)
    with pytest.raises(ValueError, match="context .* is required"):
        step.forward_pair(a, a)
    main_step = model.stage0.steps[0]
    with pytest.raises(ValueError, match="built without one"):
        main_step.forward_pair(a, a, context=tf.zeros([2, 8, 4, 8]))


def test_sample_and_iw_counts(model):
    with pytest.raises(ValueError, match="n=0 must be >= 1"):
        model.sample(0)
    with pytest.raises(ValueError, match="n_samples=0 must be >= 1"):
        model.importance_weighted_bits_per_dim(np.zeros((1, 8, 8, 3), np.uint8), 0)
