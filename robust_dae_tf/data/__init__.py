"""Datasets and tf.data pipelines.

Layout: `catalog` (DatasetSpec, DATASETS, get_spec; no TensorFlow), `specs` (the
preprocessing rules), `sources` (where data is read from: `digits`, one module per local
format registered in `sources.LOCAL_FORMATS`, `tfds`), `splits` (load_splits,
describe_split, split_files, save_split, CelebA attributes per split), `batches` (the
tf.data pipelines). The names below are the package's API, re-exported lazily: importing
the package does not import TensorFlow.

Conventions
-----------
* `load_splits` returns ``{"train": ds, "test": ds}``. Every element is a dict
  ``{"image": tf.uint8 [H, W, C] with values 0..255, "label": tf.int64 scalar}``,
  already preprocessed to ``get_spec(name).image_shape``. Datasets without class
  labels (celeb_a) use label -1.
* `to_float` turns uint8 images into float32 in [0, 1] (x / 255).
  `training_batches` and `evaluation_batches` yield float images.

Preprocessing (one map function per dataset, applied to every source)
------------------------------------------------------------------
* mnist, fashion_mnist, digits: 28x28x1 is zero-padded by 2 pixels on every side
  to 32x32x1; the original pixels are unchanged. The reference implementation
  brought these sets to 32 px because the paper's MS-SSIM metric needs images of
  at least 32 px. Images that are already 32x32x1 pass unchanged.
* digits (the embedded default, no download): scikit-learn's bundled 8x8 digits
  (values 0..16) are scaled to 0..255, bilinearly resized to 28x28 and then
  padded like MNIST. Split: a fixed permutation (seed 0) of the 1797 images;
  the last 297 are the test split, the first 1500 the training split.
* svhn_cropped: 32x32x3, unchanged.
* celeb_a: centre crop 140x140, bilinear antialiased resize to 64x64, rounded
  back to uint8. Any 3-channel image of at least 140x140 is accepted (TFDS and
  img_align_celeba images are 218x178).
Any other image shape is rejected with a `DataError` naming expected vs found
(image files past the first one of a split: see below).

Sources of `load_splits`
------------------------
1. ``name == "digits"``: the embedded scikit-learn digits.
2. ``data_dir`` given: local files, detected in this order:
   a. the 4 MNIST IDX files (optionally .gz) in the directory;
   b. SVHN's official cropped-digit files ``train_32x32.mat`` and
      ``test_32x32.mat`` (MATLAB v5, read with scipy.io.loadmat: X uint8
      [32, 32, 3, N], y [N, 1] with labels 1..10 where 10 means digit 0, mapped
      to 0 like TFDS). ``extra_32x32.mat`` is not used (the TFDS path uses only
      "train" and "test" too). Missing X or y, another X shape or dtype, a y of
      another length or with labels outside 1..10, and a file that is not a v5
      .mat are DataErrors naming the file;
   c. a Keras-style .npz (the file, or the only .npz in the directory) with
      keys x_train, y_train, x_test, y_test;
   d. image folders ``train/<class>/*`` and ``test/<class>/*`` (label = index of
      the class name in the sorted training class names);
   e. a flat folder of images (directly in data_dir or in ``img_align_celeba/``),
      only for datasets without class labels (celeb_a). CelebA's annotation files
      are looked for in the image folder and its parents up to data_dir's parent.
      The split, first rule that applies (`describe_split` states which one was
      used; `load_splits` logs it):
      - ``list_eval_partition.txt`` (or .csv): partition 0 = train, 2 = test, and
        1 (validation) is ignored, like the TFDS path that uses only "train" and
        "test";
      - else ``identity_CelebA.txt``: a split by identity, so test identities
        are unseen in training. Of the identities of the images present, the
        max(1, round(10%)) (halves up) whose SHA-256 hex digest of the decimal
        identity number sorts first are the test identities; all their images are
        the test split. Deterministic, independent of file order and library
        versions. Needs an identity for every image and at least 2 identities;
      - else (neither file) the last 10% of the sorted file names are the test
        split (a warning says so: identities may then appear in both splits).
   `read_celeba_attributes` / `celeba_attributes` read list_attr_celeba.txt
   (40 attributes, -1/+1); `split_files` gives the image files of each split in
   the order of the split's elements, to align attributes with them, and
   `celeba_split_attributes` gives the aligned rows (ExampleGen stores them).
   Image files are decoded lazily inside tf.data. The first image of each split
   is checked eagerly; a later image with a different shape fails the pipeline
   with a TensorFlow assertion naming the file. `save_split` (ExampleGen's
   writer) turns any later file that cannot be decoded or has the wrong shape
   into a DataError naming it.
3. otherwise TFDS (``tfds.load``); a dataset that is neither prepared nor
   downloadable raises a `DataError` explaining the alternatives.

Training order
--------------
The shuffle order of epoch e depends only on (seed, e), not on
`tf.random.set_seed` or on the epoch a run started at, so a resumed run sees
exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from robust_dae_tf.data.catalog import ALIASES, DATASETS, DatasetSpec, get_spec
from robust_dae_tf.lazy import lazy_exports

# The names of the modules that import TensorFlow are re-exported lazily: importing this
# package (e.g. for `get_spec`) does not import TensorFlow, so a script checks --dataset first.
_EXPORTS = {
    "batches": ("count_examples", "evaluation_batches", "steps_per_epoch", "take_arrays", "to_float",
                "training_batches"),
    "sources.celeba": ("CelebAAttributes", "celeba_attribute_file", "celeba_attributes", "read_celeba_attributes"),
    "splits": ("celeba_split_attributes", "describe_split", "failing_element_error", "load_splits", "save_split",
               "split_files"),
}
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ALIASES", "CelebAAttributes", "DATASETS", "DatasetSpec", "celeba_attribute_file", "celeba_attributes",
    "celeba_split_attributes", "count_examples", "describe_split", "evaluation_batches", "failing_element_error",
    "get_spec", "load_splits", "read_celeba_attributes", "save_split", "split_files", "steps_per_epoch",
    "take_arrays", "to_float", "training_batches",
]
