"""The model registry: THE list of model names `--model` accepts.

Each entry maps a name to the module that makes it: the module's `build(config,
image_shape)` (or the entry's `builder`) returns the uncompiled `models.Autoencoder`,
and its `config_sections()` returns the config sections the model reads (section name
-> ml_collections.ConfigDict; several names may share a module and its sections).
`config_lib.base_config()` collects the sections of every registered module, in
registry order, so adding a model is one module plus one line here (or one
`register(...)` call, e.g. in a test).

Modules are imported only when a model is built or the config is assembled, so
importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import importlib

from robust_dae_tf.errors import ConfigError

OURS = "ours"
BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class Entry:
    """module: importable module path; builder: its function (config, image_shape) ->
    model; family: "ours" (the paper's models) or "baseline"."""

    module: str
    builder: str = "build"
    family: str = BASELINE


#: model name -> Entry, in display order (ours first, then the baselines).
MODELS: dict[str, Entry] = {
    "gmm_dae": Entry("robust_dae_tf.models.regularized", family=OURS),
    "augmented": Entry("robust_dae_tf.models.regularized", family=OURS),
    "robust": Entry("robust_dae_tf.models.regularized", family=OURS),
    "vae": Entry("robust_dae_tf.baselines.vae"),
    "beta_vae": Entry("robust_dae_tf.baselines.vae"),
    "beta_tcvae": Entry("robust_dae_tf.baselines.beta_tcvae"),
    "lipschitz_vae": Entry("robust_dae_tf.baselines.lipschitz_vae"),
    "se": Entry("robust_dae_tf.baselines.smooth_encoder"),
    "avae": Entry("robust_dae_tf.baselines.avae"),
}


def names(family: str | None = None) -> tuple:
    """Registered model names (of one family when given), in registry order."""
    return tuple(name for name, entry in MODELS.items() if family is None or entry.family == family)


def register(name: str, module: str, builder: str = "build", family: str = BASELINE) -> None:
    """Adds (or replaces) a model: `module.builder(config, image_shape)` makes it."""
    MODELS[name] = Entry(module, builder, family)


def unregister(name: str) -> None:
    MODELS.pop(name, None)


def entry(name: str) -> Entry:
    if name not in MODELS:
        raise ConfigError(f"config.model.variant: {name!r} is unknown; choose one of {', '.join(MODELS)} (flag --model).")
    return MODELS[name]


def build(config, image_shape):
    """The uncompiled model `config.model.variant` names."""
    spec = entry(config.model.variant)
    return getattr(importlib.import_module(spec.module), spec.builder)(config, image_shape)


def config_sections() -> dict:
    """Section name -> ConfigDict of every registered module (each module once)."""
    sections = {}
    for module in dict.fromkeys(spec.module for spec in MODELS.values()):
        for name, section in importlib.import_module(module).config_sections().items():
            if name in sections:
                raise ConfigError(f"config section {name!r} is defined twice (again by {module}).")
            sections[name] = section
    return sections
