"""The model registry: THE list of model names `--model` accepts.

Each entry maps a name to the module that makes it: the module's `build(config,
image_shape)` (or the entry's `builder`) returns the uncompiled `models.Autoencoder`,
and its `config_sections()` returns the config sections the model reads (section name
-> ml_collections.ConfigDict; several names may share a module and its sections).
`config_lib.base_config()` collects the sections of every registered module, in
registry order, so adding a model is one module plus one line here (or one
`register(...)` call, e.g. in a test).

The built-in models' sections are defined in `models.sections`, which imports no
TensorFlow (the entries name it, `Entry.sections`): a config is assembled, and the
scripts check their flags, before TensorFlow is imported. The model modules are
imported only when a model is built, so importing this module is cheap.
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
    model; family: "ours" (the paper's models) or "baseline"; sections: "module:function"
    returning the model's config sections (None: `module`'s `config_sections`)."""

    module: str
    builder: str = "build"
    family: str = BASELINE
    sections: str | None = None


#: model name -> Entry, in display order (ours first, then the baselines).
_SECTIONS = "robust_dae_tf.models.sections:"
MODELS: dict[str, Entry] = {
    "gmm_dae": Entry("robust_dae_tf.models.regularized", family=OURS, sections=_SECTIONS + "regularized_sections"),
    "augmented": Entry("robust_dae_tf.models.regularized", family=OURS, sections=_SECTIONS + "regularized_sections"),
    "robust": Entry("robust_dae_tf.models.regularized", family=OURS, sections=_SECTIONS + "regularized_sections"),
    "vae": Entry("robust_dae_tf.baselines.vae", sections=_SECTIONS + "vae_sections"),
    "beta_vae": Entry("robust_dae_tf.baselines.vae", sections=_SECTIONS + "vae_sections"),
    "beta_tcvae": Entry("robust_dae_tf.baselines.beta_tcvae", sections=_SECTIONS + "beta_tcvae_sections"),
    "lipschitz_vae": Entry("robust_dae_tf.baselines.lipschitz_vae", sections=_SECTIONS + "lipschitz_vae_sections"),
    "se": Entry("robust_dae_tf.baselines.smooth_encoder", sections=_SECTIONS + "smooth_encoder_sections"),
    "avae": Entry("robust_dae_tf.baselines.avae", sections=_SECTIONS + "avae_sections"),
}


def names(family: str | None = None) -> tuple:
    """Registered model names (of one family when given), in registry order."""
    return tuple(name for name, entry in MODELS.items() if family is None or entry.family == family)


def register(name: str, module: str, builder: str = "build", family: str = BASELINE,
             sections: str | None = None) -> None:
    """Adds (or replaces) a model: `module.builder(config, image_shape)` makes it."""
    MODELS[name] = Entry(module, builder, family, sections)


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
    """Section name -> ConfigDict of every registered model (each sections function once)."""
    sections = {}
    for source in dict.fromkeys(spec.sections or spec.module for spec in MODELS.values()):
        module, _, function = source.partition(":")
        for name, section in getattr(importlib.import_module(module), function or "config_sections")().items():
            if name in sections:
                raise ConfigError(f"config section {name!r} is defined twice (again by {source}).")
            sections[name] = section
    return sections
