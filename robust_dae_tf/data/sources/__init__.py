"""Where `load_splits` reads a dataset from: the embedded digits (`digits`), local files
(one module per format, registered in `LOCAL_FORMATS`) or TFDS (`tfds`).

A local format is one module with `detect(spec, path)` and `read(spec, source)` (see
`robust_dae_tf.data.sources.base`) plus one line in `LOCAL_FORMATS`. Formats are tried in
the order of `LOCAL_FORMATS`; the first whose `detect` finds its files reads them.
Modules are imported when data is looked for, like the model registry's.
"""

from __future__ import annotations

import importlib
import logging
import pathlib

from robust_dae_tf.data.sources.base import LocalSource, Splits
from robust_dae_tf.data.sources.npz import NPZ_KEYS
from robust_dae_tf.data.specs import DatasetSpec
from robust_dae_tf.errors import DataError

logger = logging.getLogger(__name__)

#: format name -> module, in detection order (see the `robust_dae_tf.data` docstring).
LOCAL_FORMATS: dict[str, str] = {
    "idx": "robust_dae_tf.data.sources.idx",
    "svhn_mat": "robust_dae_tf.data.sources.svhn_mat",
    "npz": "robust_dae_tf.data.sources.npz",
    "image_folders": "robust_dae_tf.data.sources.image_folders",
    "celeba": "robust_dae_tf.data.sources.celeba",
}


def _no_data_error(directory: pathlib.Path) -> DataError:
    entries = sorted(p.name for p in directory.iterdir())[:10]
    return DataError(
        f"--data_dir={directory} holds no supported data (found: "
        f"{', '.join(entries) or 'nothing'}). Expected one of: the 4 MNIST IDX files "
        f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz; SVHN's train_32x32.mat and test_32x32.mat; one .npz with "
        f"keys {', '.join(NPZ_KEYS)}; image folders train/<class_name>/*.png and "
        f"test/<class_name>/*.png; or a flat image folder such as CelebA's img_align_celeba/."
    )


def local_format(name: str):
    """The module of a registered local format."""
    return importlib.import_module(LOCAL_FORMATS[name])


def local_source(spec: DatasetSpec, data_dir: str) -> LocalSource:
    """Detects the kind of local data (the first format of `LOCAL_FORMATS` that finds it)."""
    path = pathlib.Path(data_dir).expanduser().resolve()
    for name in LOCAL_FORMATS:
        found = local_format(name).detect(spec, path)
        if found is not None:
            return found
    if not path.is_dir():
        raise DataError(
            f"--data_dir={data_dir} is neither a directory nor an .npz file; "
            f"point it at the local copy of the {spec.name} data."
        )
    raise _no_data_error(path)


def load_local(spec: DatasetSpec, data_dir: str) -> Splits:
    local = local_source(spec, data_dir)
    log = logger.warning if local.split.startswith("last 10%") else logger.info
    log("%s from --data_dir=%s, split: %s", spec.name, data_dir, local.split)
    return local_format(local.format).read(spec, local.source)
