"""Every flow layer: exact inverse, log-determinant = autodiff log|det J|, TFP bijector agrees."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import flat_jacobian_logdet, perturb
from tfglow.actnorm import ActNorm
from tfglow.coupling import AdditiveCoupling, AffineCoupling
from tfglow.invconv import InvConv1x1, LUInvConv1x1
from tfglow.permutation import Reverse, Shuffle
from tfglow.prior import TopPrior
from tfglow.split import Split2d
from tfglow.squeeze import Squeeze
from tfglow.step import FlowStep

SHAPE = (2, 4, 4, 4)  # tiny: D = 64, so the autodiff Jacobian is 64 x 64
# Inverses to 1e-4 (float32) with weights perturbed far from their init (scale 0.3).


def _layers(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "actnorm": ActNorm(),
        "reverse": Reverse(),
        "shuffle": Shuffle(rng=rng),
        "invconv": InvConv1x1(rng=rng),
        "invconv_lu": LUInvConv1x1(rng=rng),
        "additive": AdditiveCoupling(8, rng=rng),
        "affine": AffineCoupling(8, rng=rng),
        "split": Split2d(),
        "prior_learntop": TopPrior(learntop=True),
        "step_affine_lu": FlowStep(8, flow_permutation=3, flow_coupling=1, rng=rng),
        "step_additive_plain": FlowStep(8, flow_permutation=2, flow_coupling=0, rng=rng),
        "squeeze": Squeeze(),
    }


NAMES = list(_layers())


def _built(name, rng):
    layer = _layers()[name]
    layer.build(SHAPE)
    perturb(layer, rng, scale=0.3)
    return layer


@pytest.mark.parametrize("name", NAMES)
def test_inverse_of_forward_is_identity(name, rng):
    layer = _built(name, rng)
    x = tf.constant(rng.normal(size=SHAPE).astype(np.float32))
    y, fldj = layer.forward(x)
    x2, ildj = layer.inverse(y)
    assert tuple(y.shape[1:]) == layer.forward_event_shape(SHAPE[1:])
    np.testing.assert_allclose(x2.numpy(), x.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-5, atol=1e-4)
    assert fldj.shape == (SHAPE[0],)


@pytest.mark.parametrize("name", NAMES)
def test_logdet_matches_autodiff_jacobian(name, rng):
    layer = _built(name, rng)
    x = tf.constant(rng.normal(size=SHAPE).astype(np.float32))
    _, fldj = layer.forward(x)
    expected = flat_jacobian_logdet(lambda t: layer.forward(t)[0], x)
    np.testing.assert_allclose(fldj.numpy(), expected, rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_tfp_bijector_is_the_same_map(name, rng):
    layer = _built(name, rng)
    bij = layer.bijector()
    x = tf.constant(rng.normal(size=SHAPE).astype(np.float32))
    y, fldj = layer.forward(x)
    np.testing.assert_array_equal(bij.forward(x).numpy(), y.numpy())
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=3).numpy(),
                               fldj.numpy(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(bij.inverse(y).numpy(), x.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(y, event_ndims=3).numpy(),
                               -fldj.numpy(), rtol=1e-5, atol=1e-4)
    assert tuple(bij.forward_event_shape(SHAPE[1:])) == layer.forward_event_shape(SHAPE[1:])
