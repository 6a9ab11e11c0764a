"""The supported datasets: `DatasetSpec`, `DATASETS`, `ALIASES` and `get_spec`, without
TensorFlow (the scripts check --dataset before TensorFlow is imported). How each one's
source images are brought to its `image_shape` is `specs`, which re-exports these names."""

from __future__ import annotations

import dataclasses

from robust_dae_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A supported dataset.

    Attributes:
      name: canonical name (a key of `DATASETS`).
      image_shape: (H, W, C) of the images after preprocessing.
      num_classes: number of class labels; 0 when there are none (celeb_a).
      tfds_name: TFDS name, or None for the embedded set.
    """

    name: str
    image_shape: tuple
    num_classes: int
    tfds_name: str | None


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (32, 32, 1), 10, "mnist"),
    "fashion_mnist": DatasetSpec("fashion_mnist", (32, 32, 1), 10, "fashion_mnist"),
    "svhn_cropped": DatasetSpec("svhn_cropped", (32, 32, 3), 10, "svhn_cropped"),
    "celeb_a": DatasetSpec("celeb_a", (64, 64, 3), 0, "celeb_a"),
    "digits": DatasetSpec("digits", (32, 32, 1), 10, None),
}
ALIASES = {"svhn": "svhn_cropped", "celeba": "celeb_a", "fmnist": "fashion_mnist"}


def get_spec(name: str) -> DatasetSpec:
    """Returns the spec of a dataset name or alias (case-insensitive)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        aliases = ", ".join(f"{a}={c}" for a, c in sorted(ALIASES.items()))
        raise ConfigError(
            f"Unknown dataset {name!r} for --dataset; expected one of "
            f"{', '.join(sorted(DATASETS))} (aliases: {aliases})."
        )
    return DATASETS[key]
