"""TensorFlow Datasets (`tfds.load`): the source when neither the embedded digits nor
--data_dir apply; a dataset that is neither prepared nor downloadable is a DataError
explaining the alternatives."""

from __future__ import annotations

import logging

import tensorflow as tf

from robust_dae_tf.data.sources.base import Splits
from robust_dae_tf.data.specs import AUTOTUNE, DatasetSpec, check_shape, finish
from robust_dae_tf.errors import DataError

logger = logging.getLogger(__name__)


_MNIST_FORMAT_HINT = (
    "a directory with the 4 MNIST IDX files train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
    "or a Keras-style .npz with x_train, y_train, x_test, y_test"
)


_LOCAL_FORMAT_HINTS = {
    "mnist": _MNIST_FORMAT_HINT,
    "fashion_mnist": _MNIST_FORMAT_HINT,
    "svhn_cropped": "a directory with SVHN's train_32x32.mat and test_32x32.mat, an .npz "
    "with x_train, y_train, x_test, y_test (32x32x3 uint8), or image folders "
    "train/<class>/*.png and test/<class>/*.png",
    "celeb_a": "CelebA's img_align_celeba/ folder of JPEGs, with list_eval_partition.txt "
    "or identity_CelebA.txt next to it",
}


def read(spec: DatasetSpec, tfds_data_dir: str | None, download: bool) -> Splits:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    if download and not tfds.builder(spec.tfds_name, data_dir=tfds_data_dir).is_prepared():
        logger.warning(
            "%s is not prepared in the TFDS data dir; TFDS will now download it. Without network "
            "access this fails only after TFDS's retries (minutes): pass --data_dir with local files "
            "(%s) or --config.data.download=False to fail at once.",
            spec.tfds_name,
            _LOCAL_FORMAT_HINTS[spec.name],
        )
    try:
        train, test = tfds.load(
            spec.tfds_name, split=["train", "test"], data_dir=tfds_data_dir, download=download
        )
    except Exception as err:  # TFDS raises many types (AssertionError, OSError, ...).
        where = tfds_data_dir or tfds.core.constants.DATA_DIR
        cause = str(err).splitlines()[0] if str(err) else ""
        raise DataError(
            f"Dataset {spec.tfds_name} is not in the TFDS data dir {where} and could not be "
            f"downloaded ({type(err).__name__}: {cause}). Either run once with network "
            f"access (TFDS then downloads and prepares it), or pass --data_dir pointing to "
            f"local files ({_LOCAL_FORMAT_HINTS[spec.name]}), or use --dataset=digits for "
            f"the embedded data."
        ) from err
    splits = {}
    for split, ds in (("train", train), ("test", test)):
        check_shape(
            spec,
            tuple(ds.element_spec["image"].shape),
            f"TFDS {spec.tfds_name}",
            "This TFDS version changed the dataset; pass --data_dir with local files instead.",
        )
        splits[split] = finish(spec, ds.map(_tfds_example, num_parallel_calls=AUTOTUNE))
    return splits


def describe(spec: DatasetSpec) -> str:
    """How TFDS splits are used (`describe_split`)."""
    return f"TFDS {spec.tfds_name}: 'train' / 'test' splits"


def _tfds_example(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    label = example.get("label", tf.constant(-1, tf.int64))
    return {"image": example["image"], "label": tf.cast(label, tf.int64)}
