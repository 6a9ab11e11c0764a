"""config_lib: defaults that depend on other fields (train.jit_compile per architecture)."""

import os

import pytest
import tensorflow as tf
from absl import flags
from ml_collections import config_flags

from robust_dae_tf import config_lib, fit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(architecture, jit_compile=None):
    config = config_lib.base_config()
    config.model.architecture = architecture
    config.model.variant = "gmm_dae"
    config.model.hidden_units = (8,)
    config.model.conv_filters = (4, 8)
    config.model.latent_dim = 5
    config.loss.weight_estimation_batches = 2
    if jit_compile is not None:
        config.train.jit_compile = jit_compile
    return config


@pytest.mark.parametrize("architecture, expected", [("fc", True), ("conv", False)])
def test_jit_compile_defaults_to_xla_for_fc_and_not_for_conv(architecture, expected):
    config = tiny(architecture)
    assert config.train.jit_compile is None  # unset: decided by the architecture
    assert config_lib.training_jit_compile(config) is expected
    model = fit.compile_model(config, (16, 16, 3), tf.distribute.get_strategy())
    assert model.jit_compile is expected
    config_lib.resolve_defaults(config)  # what config.json records
    assert config.train.jit_compile is expected


@pytest.mark.parametrize("architecture", ["fc", "conv"])
@pytest.mark.parametrize("value", [True, False])
def test_an_explicit_jit_compile_is_kept(architecture, value):
    config = tiny(architecture, jit_compile=value)
    assert config_lib.training_jit_compile(config) is value
    config_lib.resolve_defaults(config)
    assert config.train.jit_compile is value
    assert fit.compile_model(config, (16, 16, 3), tf.distribute.get_strategy()).jit_compile is value


@pytest.mark.parametrize("dataset, expected", [("mnist", True), ("fashion_mnist", True),
                                               ("svhn_cropped", False), ("celeb_a", False)])
@pytest.mark.parametrize("override", [None, "True", "False"])
def test_dataset_configs_and_command_line_values(dataset, expected, override):
    argv = ["train.py", f"--config={os.path.join(REPO, 'configs', dataset + '.py')}"]
    if override is not None:
        argv.append(f"--config.train.jit_compile={override}")
    values = flags.FlagValues()  # parsed as bin/train.py parses its flags
    config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    config = values.config
    config_lib.resolve_defaults(config)
    assert config.train.jit_compile is (expected if override is None else override == "True")


def test_a_saved_config_with_the_field_unset_or_set_reads_back():
    for value in (None, False):
        config = tiny("conv", jit_compile=value)
        again = config_lib.from_dict(__import__("json").loads(config_lib.to_json(config)))
        assert again.train.jit_compile is value
        assert config_lib.training_jit_compile(again) is False
