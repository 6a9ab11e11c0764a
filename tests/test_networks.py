import ml_collections
import numpy as np
import pytest

from robust_dae_tf import networks
from robust_dae_tf.errors import ConfigError


def _model_config(**kw):
    c = ml_collections.ConfigDict(dict(architecture="fc", latent_dim=10, hidden_units=(200, 200, 200, 200), conv_filters=(128, 256, 512, 1024)))
    c.update(kw)
    return c


def test_fc_nets_have_the_reference_layer_sizes():
    enc, dec = networks.build_networks(_model_config(), (32, 32, 1))
    # 1024->200, 3 x 200->200, 200->10 (weights + biases), and the mirror.
    expected_enc = 1024 * 200 + 200 + 3 * (200 * 200 + 200) + 200 * 10 + 10
    expected_dec = 10 * 200 + 200 + 3 * (200 * 200 + 200) + 200 * 1024 + 1024
    assert enc.count_params() == expected_enc
    assert dec.count_params() == expected_dec
    x = np.random.default_rng(0).random((3, 32, 32, 1)).astype("float32")
    z = enc(x)
    out = dec(z).numpy()
    assert z.shape == (3, 10) and out.shape == (3, 32, 32, 1)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shape,latent", [((32, 32, 3), 100), ((64, 64, 3), 64)])
def test_conv_nets_shapes_and_pixel_range(shape, latent):
    cfg = _model_config(architecture="conv", latent_dim=latent, conv_filters=(8, 16, 32, 64))
    enc, dec = networks.build_networks(cfg, shape)
    x = np.random.default_rng(1).random((2, *shape)).astype("float32")
    out = dec(enc(x)).numpy()
    assert enc(x).shape == (2, latent) and out.shape == (2, *shape)
    assert 0 <= out.min() and out.max() <= 1
    # Decoder starts from a (H/16, W/16, top filters) tensor, as in the reference.
    assert dec.get_layer("dense").units == (shape[0] // 16) * (shape[1] // 16) * 64


def test_bad_architectures_raise_config_errors():
    with pytest.raises(ConfigError, match="model.architecture"):
        networks.build_networks(_model_config(architecture="resnet"), (32, 32, 1))
    with pytest.raises(ConfigError, match="divisible by 16"):
        networks.build_networks(_model_config(architecture="conv"), (28, 28, 1))
