"""bin/train.py end to end, and one clear line for every bad input."""

import json
import os
import re

import pytest

from robust_dae_tf import cli
from robust_dae_tf.pipeline import artifacts
from tests.scripts import run_script


def run_train(*args, timeout=600):
    return run_script("train.py", *args, timeout=timeout)


def test_train_cli_trains_exports_and_resumes(tmp_path):
    workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "sm")
    args = [f"--workdir={workdir}", f"--export_dir={export_dir}", "--model=augmented", "--epochs=1",
            "--config.data.max_train_examples=300", "--config.model.hidden_units=(32,32)",
            "--config.loss.weight_estimation_batches=5", "--config.train.verbose=0"]
    done = run_train(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SavedModel:" in done.stdout
    meta = json.load(open(os.path.join(export_dir, "robust_dae_tf.json")))
    assert meta["variant"] == "augmented" and meta["dataset"] == "digits" and meta["training"]["steps"] == 3
    model = artifacts.read_artifact(os.path.join(workdir, "trainer"), "Model")
    assert model.properties["steps"] == 3
    # Same command again: the export target exists -> one clear line, exit 1, nothing lost.
    again = run_train(*args)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error: export path")
    assert "Traceback" not in again.stderr
    # Two more epochs resume from the checkpoint (3 steps per epoch).
    more = run_train(*args[:-5], "--epochs=3", *args[-4:], "--overwrite")
    assert more.returncode == 0, more.stderr[-2000:]
    assert json.load(open(os.path.join(export_dir, "robust_dae_tf.json")))["training"]["steps"] == 9


def test_train_cli_trains_and_exports_a_baseline_with_its_prior(tmp_path):
    export_dir = str(tmp_path / "sm")
    done = run_train(f"--workdir={tmp_path / 'run'}", f"--export_dir={export_dir}", "--model=beta_vae", "--epochs=1",
                     "--config.data.max_train_examples=200", "--config.model.hidden_units=(32,)",
                     "--config.vae.beta=2.0", "--config.train.verbose=0")
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.load(open(os.path.join(export_dir, "robust_dae_tf.json")))
    assert meta["variant"] == "beta_vae" and meta["prior"] == {"type": "normal", "latent_dim": 10}
    assert meta["loss_weights"] == {"beta": 2.0} and meta["training"]["steps"] == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset=imagenet"], "unknown dataset"),
        (["--model=wgan"], "model.variant"),
        (["--dataset=mnist", "--data_dir=/nonexistent/dir"], "/nonexistent/dir"),
        (["--config.train.batch_size=1"], "train.batch_size"),
        (["--config.loss.coupling=2"], "coupling"),
        (["--dataset=mnist", "--config=configs/digits.py"], "contradicts"),
    ],
)
def test_bad_input_ends_in_one_clear_line(tmp_path, args, message):
    done = run_train(f"--workdir={tmp_path / 'w'}", f"--export_dir={tmp_path / 'e'}", *args, timeout=300)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message.lower() in last.lower(), last
    assert not os.path.exists(tmp_path / "e")


def test_select_config_file_uses_dataset_flag():
    argv = cli.select_config_file(["train.py", "--dataset=celeba", "--config.train.epochs=2"])
    assert argv[1] == f"--config={os.path.join(cli.CONFIG_DIR, 'celeb_a.py')}"
    assert cli.select_config_file(["t", "--config=x.py"]) == ["t", "--config=x.py"]
    assert {"mnist", "fashion_mnist", "svhn_cropped", "celeb_a", "digits"} <= set(cli.available_configs())


def test_every_dataset_config_builds_its_model():
    import importlib.util

    from robust_dae_tf import config_lib, data, networks
    from robust_dae_tf.priors import GMMPrior

    for name in ("mnist", "fashion_mnist", "svhn_cropped", "celeb_a", "digits"):
        spec = importlib.util.spec_from_file_location(name, os.path.join(cli.CONFIG_DIR, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config()
        config_lib.validate(config)
        assert config.dataset == name
        shape = data.get_spec(name).image_shape
        encoder, decoder = networks.build_networks(config.model, shape)
        assert encoder.output_shape[-1] == config.model.latent_dim and decoder.output_shape[1:] == shape
        assert GMMPrior.from_config(config.prior, config.model.latent_dim).num_modes == config.prior.num_modes


@pytest.mark.parametrize("dataset", ["fashion_mnist", "svhn_cropped", "celeb_a"])
def test_every_baseline_builds_from_every_dataset_config_and_encodes_its_images(dataset):
    import importlib.util

    import numpy as np

    from robust_dae_tf import config_lib, data, models

    spec = importlib.util.spec_from_file_location(dataset, os.path.join(cli.CONFIG_DIR, f"{dataset}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shape = data.get_spec(dataset).image_shape
    images = np.random.default_rng(0).random((2, *shape), np.float32)
    for name in config_lib.BASELINES:
        config = module.get_config()
        config.model.variant = name
        if name == "beta_tcvae":
            config.beta_tcvae.dataset_size = 1000
        model = models.build_model(config, shape)
        latents = model.encode(images)
        assert latents.shape == (2, config.model.latent_dim), name
        assert model.decode(latents).shape == (2, *shape), name
        assert model.prior.to_dict() == {"type": "normal", "latent_dim": config.model.latent_dim}


@pytest.mark.parametrize(
    "content,override,message",
    [
        (None, None, "no such file"),
        ("def get_config(:\n", None, "syntax error in .*line 1"),
        ("X = 1\n", None, "defines no get_config"),
        ("def get_config():\n    raise KeyError('boom')\n", None, "get_config.. of .* failed .KeyError"),
        (None, "--config.train.no_such_field=1", "config.train has no field 'no_such_field'; its fields are batch_size"),
        (None, "--noconfig.train.nonexistent", "has no field 'nonexistent'"),
        (None, "--config.nosuch.x=1", "the config has no field 'nosuch'"),
    ],
)
def test_config_file_and_field_problems_are_one_error_line_before_flag_parsing(tmp_path, content, override, message):
    path = os.path.join(cli.CONFIG_DIR, "digits.py")
    if content is not None or override is None:
        path = str(tmp_path / "my_config.py")
        if content is not None:
            open(path, "w").write(content)
    argv = ["train.py", f"--config={path}", *([override] if override else [])]
    with pytest.raises(SystemExit) as info:
        cli.check_config_flags(argv)
    assert str(info.value).startswith("error: --") and "\n" not in str(info.value)
    assert re.search(message, str(info.value)), info.value


def test_valid_config_flags_pass_the_check():
    path = os.path.join(cli.CONFIG_DIR, "digits.py")
    cli.check_config_flags(["train.py", f"--config={path}", "--config.train.epochs=3", "--config.model.hidden_units",
                            "(32,)", "--noconfig.data.download", "--config.model.hidden_units[0]=5", "--", "--config.x=1"])
    cli.check_config_flags(["train.py", "--dataset=digits"])  # no --config: nothing to check


def test_config_validation_names_loss_weighting_and_its_values():
    from robust_dae_tf import config_lib
    from robust_dae_tf.errors import ConfigError

    config = config_lib.base_config()
    assert config.loss.weighting == "paper"
    config.loss.weighting = "reference"
    config_lib.validate(config)
    config.loss.weighting = "papr"
    with pytest.raises(ConfigError, match=r"config\.loss\.weighting: must be 'paper' or 'reference', got 'papr'"):
        config_lib.validate(config)
