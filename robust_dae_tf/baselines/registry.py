"""Which baseline `config.model.variant` names, and how to build it.

`build_baseline(config, image_shape)` returns the UNCOMPILED keras.Model of the
baseline named by `config.model.variant` (one of `config_lib.BASELINES`). Each
baseline module exposes `build(config, image_shape)`; modules are imported lazily so
that importing the package stays cheap.
"""

from __future__ import annotations

import importlib

from robust_dae_tf import config_lib
from robust_dae_tf.errors import ConfigError

#: model name -> module of robust_dae_tf.baselines whose `build(config, image_shape)` makes it.
MODULES = {
    "vae": "vae",
    "beta_vae": "vae",
    "beta_tcvae": "beta_tcvae",
    "lipschitz_vae": "lipschitz_vae",
    "se": "smooth_encoder",
    "avae": "avae",
}
assert set(MODULES) == set(config_lib.BASELINES)


def build_baseline(config, image_shape):
    name = config.model.variant
    if name not in MODULES:
        raise ConfigError(f"{name!r} is not a baseline; choose one of {', '.join(config_lib.BASELINES)}.")
    module = importlib.import_module(f"robust_dae_tf.baselines.{MODULES[name]}")
    return module.build(config, image_shape)
