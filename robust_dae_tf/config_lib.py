"""Run configuration: the shared structure of every config file in `configs/`.

Configs are `ml_collections.ConfigDict`s. Each file in `configs/` (one per dataset)
calls `base_config()` and overrides the values of its dataset; any field can be
overridden on the command line (`--config.train.epochs=5`). `validate()` turns an
inconsistent config into one `ConfigError` naming the field. The resolved config is
written next to every run (`config.json`).
"""

from __future__ import annotations

import json

import ml_collections
from ml_collections import config_dict

from robust_dae_tf.errors import ConfigError


def _registry():
    from robust_dae_tf.models import registry  # imported late: the registry's modules import TensorFlow

    return registry


def __getattr__(name):
    """`VARIANTS` (the paper's models), `BASELINES` (the VAE family) and `MODELS` (every
    name `--model` accepts, stored in `config.model.variant`), read from the model
    registry (`robust_dae_tf.models.registry`, the only list of names) when asked."""
    families = {"VARIANTS": "ours", "BASELINES": "baseline", "MODELS": None}
    if name in families:
        return _registry().names(families[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all datasets (the reference's MNIST values)."""
    c = ml_collections.ConfigDict()
    c.dataset = "digits"

    c.data = ml_collections.ConfigDict()
    c.data.data_dir = ""  # local files (IDX .gz directory, .npz, image folder); "" = TFDS
    c.data.tfds_data_dir = ""  # TFDS data_dir; "" = TFDS default (~/tensorflow_datasets)
    c.data.download = True  # let TFDS download when the dataset is missing
    c.data.shuffle_buffer = 10000
    c.data.max_train_examples = 0  # 0 = all; >0 keeps the first N (quick runs)

    c.model = ml_collections.ConfigDict()
    # gmm_dae (eqs. 4-5) | augmented (eqs. 7-8) | robust (eqs. 9-11), or a baseline:
    # vae | beta_vae | beta_tcvae | lipschitz_vae | se | avae (models.registry)
    c.model.variant = "robust"
    c.model.architecture = "fc"  # fc | conv
    c.model.latent_dim = 10
    c.model.hidden_units = (200, 200, 200, 200)  # fc nets
    c.model.conv_filters = (128, 256, 512, 1024)  # conv nets

    # The sections of the models (prior / loss / adversarial of the GMM models, vae,
    # beta_tcvae, lipschitz_vae, se, avae of the baselines), collected in registry order
    # (`registry.config_sections`; the built-in ones from `models.sections`, no TensorFlow).
    for name, section in _registry().config_sections().items():
        c[name] = section

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 100
    c.train.epochs = 500
    c.train.learning_rate = 2e-4
    c.train.seed = 0
    # XLA (Keras jit_compile) for the training step. Unset (None) = per architecture
    # (`jit_compile_default`): on for the fc nets (faster on CPU), off for the conv nets
    # (TensorFlow's oneDNN convolutions, which XLA does not use, are faster); a value set
    # on the command line (--config.train.jit_compile=True/False) is kept. Resolved into
    # the run's config.json (`resolve_defaults`). Measurements in benchmarks/README.md.
    # Not used with several replicas (see training.train).
    c.train.jit_compile = config_dict.placeholder(bool)
    # Training steps run per call into the compiled graph (Keras steps_per_execution;
    # 1 under MirroredStrategy with several replicas, where Keras' loop fails):
    # fewer Python round trips per step. Checkpoints, TensorBoard scalars and the NaN
    # guard then act at the first execution boundary at or after their interval.
    c.train.steps_per_execution = 10
    c.train.checkpoint_every_steps = 500  # also at every epoch end
    c.train.keep_checkpoints = 3
    c.train.log_every_steps = 50  # TensorBoard scalars
    c.train.images_every_epochs = 1  # TensorBoard image grids
    c.train.validation_examples = 1000  # test images evaluated at each epoch end (0 = all)
    c.train.num_cpu_devices = 1  # >1 splits the CPU into logical devices (MirroredStrategy)
    # Keras "mixed_float16" (float16 compute, float32 weights, dynamic loss scaling) for
    # the networks' hidden layers; latents, decoder outputs and every loss in float32.
    c.train.mixed_precision = False
    c.train.verbose = 1  # Keras progress bar: 0 silent, 1 bar, 2 one line per epoch
    return c


# train.jit_compile when the config leaves it unset, per model.architecture (see base_config).
JIT_COMPILE_DEFAULTS = {"fc": True, "conv": False}


def jit_compile_default(architecture: str) -> bool:
    """XLA for the training step unless the config says otherwise: on for the fc nets, off
    for the conv nets (and for an architecture not listed, the conservative choice)."""
    return JIT_COMPILE_DEFAULTS.get(architecture, False)


def training_jit_compile(config: ml_collections.ConfigDict) -> bool:
    """`train.jit_compile` if set, else its default for `model.architecture`."""
    value = config.train.jit_compile
    return jit_compile_default(config.model.architecture) if value is None else bool(value)


def resolve_defaults(config: ml_collections.ConfigDict) -> None:
    """Fills the fields whose default depends on others (today `train.jit_compile`) in
    place, so that the run's config.json records the values used. Explicit values stay."""
    if config.train.jit_compile is None:
        config.train.jit_compile = training_jit_compile(config)


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for values that cannot work, naming the field."""

    def fail(field, message):
        raise ConfigError(f"config.{field}: {message}")

    models = _registry().names()
    if config.model.variant not in models:
        fail("model.variant", f"{config.model.variant!r} is unknown; choose one of {', '.join(models)} (flag --model).")
    if config.model.latent_dim < 1:
        fail("model.latent_dim", "must be >= 1.")
    if config.prior.num_modes < 1:
        fail("prior.num_modes", "must be >= 1.")
    if not abs(config.loss.coupling) <= 1:
        fail("loss.coupling", f"|alpha| must be <= 1 (eq. 10), got {config.loss.coupling}.")
    if config.loss.cross_covariance not in ("target", "ignore"):
        fail("loss.cross_covariance", f"must be 'target' or 'ignore', got {config.loss.cross_covariance!r}.")
    if config.loss.weighting not in ("paper", "reference"):
        fail("loss.weighting", f"must be 'paper' or 'reference', got {config.loss.weighting!r}.")
    if config.loss.latent_noise_std < 0:
        fail("loss.latent_noise_std", "must be >= 0.")
    if config.adversarial.epsilon < 0 or config.adversarial.step_size < 0:
        fail("adversarial", "epsilon and step_size must be >= 0.")
    if config.train.batch_size < 2:
        fail("train.batch_size", "must be >= 2 (KS and covariance losses need a batch).")
    if config.train.epochs < 1:
        fail("train.epochs", "must be >= 1.")
    if not 0 < config.train.learning_rate < float("inf"):
        fail("train.learning_rate", f"must be a finite number > 0, got {config.train.learning_rate}.")
    if config.train.num_cpu_devices < 1:
        fail("train.num_cpu_devices", "must be >= 1.")
    if not isinstance(config.train.get("mixed_precision", False), bool):
        fail("train.mixed_precision", f"must be true or false, got {config.train.mixed_precision!r}.")
    if config.train.steps_per_execution < 1:
        fail("train.steps_per_execution", "must be >= 1.")
    if config.train.checkpoint_every_steps < 1 or config.train.log_every_steps < 1:
        fail("train", "checkpoint_every_steps and log_every_steps must be >= 1.")
    if config.train.keep_checkpoints < 1:
        fail("train.keep_checkpoints", f"must be >= 1 (a run resumes from its newest checkpoint), got "
             f"{config.train.keep_checkpoints}.")


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def from_dict(values: dict) -> ml_collections.ConfigDict:
    """Rebuilds a config saved with `to_json` (lists become tuples where the base has tuples).
    Configs saved before a field was renamed are read with today's names (`_upgrade`)."""
    config = base_config()
    _merge(config, _upgrade(values), prefix="")
    return config


def _upgrade(values: dict) -> dict:
    """Renamed fields of saved configs: `se.norm` ("linf" | "l2", with `se.epsilon` the
    radius of either ball) became `se.threat_model`, with the L2 radius in `se.l2_radius`."""
    se = values.get("se")
    if not isinstance(se, dict) or "norm" not in se:
        return values
    se = dict(se)
    se["threat_model"] = se.pop("norm")
    if se["threat_model"] == "l2" and "epsilon" in se:
        se["l2_radius"] = se["epsilon"]
    return {**values, "se": se}


def _merge(config, values, prefix):
    for key, value in values.items():
        if key in config and isinstance(config[key], ml_collections.ConfigDict):
            _merge(config[key], value, prefix + key + ".")
        elif key in config and isinstance(config[key], tuple):
            config[key] = tuple(value)
        else:
            with config.unlocked():
                config[key] = value


# Fields that change what a checkpoint holds: resuming with a different value is refused.
ARCHITECTURE_FIELDS = (
    "dataset",
    "model.variant",
    "model.architecture",
    "model.latent_dim",
    "model.hidden_units",
    "model.conv_filters",
    "prior.num_modes",
    "prior.centers",
    "prior.center_scale",
    "prior.std",
)


def get_field(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def architecture_differences(saved, current) -> list[str]:
    """Fields of ARCHITECTURE_FIELDS whose values differ, as 'field: saved -> current'."""
    diffs = []
    for field in ARCHITECTURE_FIELDS:
        a, b = get_field(saved, field), get_field(current, field)
        if (tuple(a) if isinstance(a, (list, tuple)) else a) != (tuple(b) if isinstance(b, (list, tuple)) else b):
            diffs.append(f"{field}: {a!r} -> {b!r}")
    return diffs
