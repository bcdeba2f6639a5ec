import pytest

import tfglow
from tfglow.config import PRESETS


def test_presets_follow_the_paper_table():
    c = tfglow.GlowConfig.preset("cifar10")
    assert (c.image_size, c.n_levels, c.depth, c.width, c.flow_coupling, c.n_bits_x,
            c.learntop, c.flow_permutation) == (32, 3, 32, 512, 1, 8, True, 2)
    assert tfglow.GlowConfig.preset("imagenet64").n_levels == 4
    assert tfglow.GlowConfig.preset("imagenet32").depth == 48
    celeba = tfglow.GlowConfig.preset("celeba")
    assert (celeba.image_size, celeba.n_levels, celeba.flow_coupling, celeba.n_bits_x) == (256, 6, 0, 5)
    assert set(PRESETS) >= {"cifar10", "imagenet32", "imagenet64", "lsun", "celeba", "mnist", "digits"}


def test_preset_overrides_and_round_trip():
    c = tfglow.GlowConfig.preset("cifar10", depth=4, width=16)
    assert (c.depth, c.width) == (4, 16)
    assert tfglow.GlowConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("changes, fragment", [
    (dict(image_size=24, n_levels=4), r"divisible by 2\*\*n_levels=16"),
    (dict(flow_permutation=5), "flow_permutation"),
    (dict(flow_coupling=2), "flow_coupling"),
    (dict(n_bits_x=9), "n_bits_x"),
    (dict(depth=0), "depth"),
    (dict(weight_y=0.01), "needs ycond"),
])
def test_bad_configs_name_the_field(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        tfglow.GlowConfig(**changes)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="known"):
        tfglow.GlowConfig.preset("cifar100")
    with pytest.raises(ValueError, match="unknown fields"):
        tfglow.GlowConfig.from_dict({"image_size": 32, "n_level": 3})
