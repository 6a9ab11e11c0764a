"""Models: the one base class, our GMM-regularized autoencoders and the registry.

* `base.Autoencoder`: the contract every model implements (one `compute_terms` hook
  inside shared train / test steps, metric trackers, per-step stateless seeds,
  cross-replica reduction, prior, loss weights, export metadata, `prepare`).
* `regularized.RegularizedAutoencoder`: `gmm_dae`, `augmented`, `robust` (paper eqs. 4-11).
* `registry`: the list of model names and the module that builds each; the VAE-family
  baselines live in `robust_dae_tf.baselines`, subclasses of the same base.

`build_model(config, image_shape)` builds the model a run config names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from robust_dae_tf.lazy import lazy_exports
from robust_dae_tf.models import registry

if TYPE_CHECKING:
    from robust_dae_tf.models.base import Autoencoder

# The names of the modules that import TensorFlow are re-exported lazily: importing this
# package (e.g. for `registry`, which `config_lib` reads) does not import TensorFlow.
_EXPORTS = {
    "base": ("Autoencoder",),
    "regularized": ("ADVERSARIAL_VARIANTS", "VARIANTS", "RegularizedAutoencoder"),
}
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ADVERSARIAL_VARIANTS",
    "VARIANTS",
    "Autoencoder",
    "RegularizedAutoencoder",
    "build_model",
    "registry",
]


def build_model(config, image_shape) -> Autoencoder:
    """Builds the (uncompiled) model `config.model.variant` names (see `registry`).

    `config` must be valid (`config_lib.validate`, which a run applies once where it
    starts: `pipeline.run_training_pipeline`, or `fit.train` called directly)."""
    model = registry.build(config, image_shape)
    model.remember_build(config, image_shape)  # what `Autoencoder.get_config` saves for model.save(".keras")
    return model
