"""A flat folder of images (directly in --data_dir or in img_align_celeba/), for datasets
without class labels (celeb_a), split by CelebA's partition or identity file (the rules of
the `robust_dae_tf.data` docstring), and CelebA's attribute file list_attr_celeba.txt."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Sequence

import numpy as np

from robust_dae_tf.data.sources.base import IMAGE_SUFFIXES, FileSplits, LocalSource, image_files
from robust_dae_tf.data.sources.base import read_files as read  # noqa: F401  (this format's `read`)
from robust_dae_tf.data.specs import DatasetSpec, get_spec
from robust_dae_tf.errors import DataError


_PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
_IDENTITY_FILES = ("identity_CelebA.txt",)
ATTRIBUTE_FILES = ("list_attr_celeba.txt",)


def detect(spec: DatasetSpec, path: pathlib.Path) -> LocalSource | None:
    """A directory (or its img_align_celeba/) holding image files."""
    if not path.is_dir():
        return None
    image_dir = flat_image_dir(path)
    if image_files(image_dir):
        return LocalSource("celeba", "files", *_flat_folder_files(spec, path))
    if image_dir != path:  # the expected layout, without its images
        found = sorted(p.name for p in image_dir.iterdir())[:5]
        raise DataError(
            f"{image_dir} holds no images (found: {', '.join(found) or 'nothing'}); put the dataset's image files "
            f"({', '.join(IMAGE_SUFFIXES)}) in it, e.g. by unpacking CelebA's img_align_celeba.zip into {path}."
        )
    return None


def flat_image_dir(directory: pathlib.Path) -> pathlib.Path:
    """The folder holding the images: data_dir or nested img_align_celeba/."""
    while (directory / "img_align_celeba").is_dir():
        directory = directory / "img_align_celeba"
    return directory


def find_annotation(
    image_dir: pathlib.Path, data_dir: pathlib.Path, names: Sequence[str]
) -> pathlib.Path | None:
    """The first of `names` in the image folder or one of its parents up to data_dir's parent."""
    folders = [image_dir, *image_dir.parents]
    for folder in folders[: folders.index(data_dir) + 2]:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _annotation_lines(path: pathlib.Path, fix: str) -> list[str]:
    """The lines of a text annotation file (LF or CRLF); DataError when it is unreadable."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read {path} as a text file ({err}); {fix}") from err


def _read_partition(path: pathlib.Path) -> dict[str, int]:
    """CelebA's file -> partition map (0 train, 1 validation, 2 test)."""
    fix = "use CelebA's original list_eval_partition file or remove it."
    partition = {}
    for number, line in enumerate(_annotation_lines(path, fix), start=1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and fields[-1] == "partition"):
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path} line {number}: expected '<file name> <0|1|2>', found {line!r}; {fix}"
            )
        partition[fields[0]] = int(fields[1])
    return partition


def _read_identities(path: pathlib.Path) -> dict[str, int]:
    """CelebA's file -> identity map (identity_CelebA.txt: `<file> <identity number>` lines)."""
    fix = "use CelebA's original identity_CelebA.txt or remove it."
    identities = {}
    for number, line in enumerate(_annotation_lines(path, fix), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(
                f"{path} line {number}: expected '<image file> <identity number>', found "
                f"{line.strip()[:100]!r}; {fix}"
            )
        identities[fields[0]] = int(fields[1])
    return identities


def _test_identities(identities: Sequence[int]) -> set[int]:
    """The held-out identities: max(1, round(10%)) of them (halves round up), those whose
    SHA-256 digest of the decimal identity number sorts first. Depends on nothing but the
    set of identities (no RNG, file order or library version)."""
    ranked = sorted(set(identities), key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())
    return set(ranked[: max(1, (len(ranked) + 5) // 10)])


def _split_flat(
    image_dir: pathlib.Path, files: list[pathlib.Path], data_dir: pathlib.Path
) -> tuple[dict[str, list[pathlib.Path]], str]:
    """({"train": files, "test": files}, description of how they were split)."""
    partition_file = find_annotation(image_dir, data_dir, _PARTITION_FILES)
    if partition_file is not None:
        partition = _read_partition(partition_file)
        unlisted = [f for f in files if f.name not in partition]
        if unlisted:
            raise DataError(
                f"{unlisted[0]} (and {len(unlisted) - 1} more) is not listed in "
                f"{partition_file}; remove the extra images or the partition file."
            )
        splits = {
            "train": [f for f in files if partition[f.name] == 0],
            "test": [f for f in files if partition[f.name] == 2],
        }
        for split, paths in splits.items():
            if not paths:
                raise DataError(
                    f"No {split} images in {image_dir} according to {partition_file}; "
                    f"check that the partition file belongs to these images."
                )
        return splits, (
            f"official partition ({partition_file.name}): {len(splits['train'])} train (0) / "
            f"{len(splits['test'])} test (2) images, validation (1) unused"
        )
    identity_file = find_annotation(image_dir, data_dir, _IDENTITY_FILES)
    if identity_file is not None:
        identities = _read_identities(identity_file)
        unlisted = [f for f in files if f.name not in identities]
        if unlisted:
            raise DataError(
                f"{identity_file} lists no identity for {unlisted[0]} (nor for "
                f"{len(unlisted) - 1} more of the {len(files)} images); use the identity file "
                f"of these images or remove it."
            )
        people = {identities[f.name] for f in files}
        if len(people) < 2:
            raise DataError(
                f"The {len(files)} images in {image_dir} show {len(people)} identity according "
                f"to {identity_file}; an identity split needs at least 2: add images of other "
                f"identities."
            )
        test_people = _test_identities(sorted(people))
        splits = {
            "train": [f for f in files if identities[f.name] not in test_people],
            "test": [f for f in files if identities[f.name] in test_people],
        }
        return splits, (
            f"identity split: {len(people) - len(test_people)} train / {len(test_people)} test "
            f"identities ({identity_file.name}), {len(splits['train'])} / {len(splits['test'])} "
            f"images"
        )
    num_test = max(1, len(files) // 10)
    splits = {"train": files[:-num_test], "test": files[-num_test:]}
    return splits, (
        f"last 10% of the sorted file names as test (no {_PARTITION_FILES[0]} or "
        f"{_IDENTITY_FILES[0]} found; identities may overlap), {len(files) - num_test} / "
        f"{num_test} images"
    )


def _flat_folder_files(spec: DatasetSpec, data_dir: pathlib.Path) -> tuple[FileSplits, str]:
    """({split: (image paths, labels -1)}, split description) of a flat image folder."""
    image_dir = flat_image_dir(data_dir)
    if spec.num_classes:
        raise DataError(
            f"--data_dir={image_dir} is a flat image folder without labels, but "
            f"--dataset={spec.name} has {spec.num_classes} classes; arrange the images as "
            f"train/<class_name>/* and test/<class_name>/*."
        )
    files = image_files(image_dir)
    if len(files) < 2:
        raise DataError(
            f"--data_dir={image_dir} holds {len(files)} image(s); at least 2 are needed "
            f"to make train and test splits."
        )
    splits, description = _split_flat(image_dir, files, data_dir)
    return {split: (paths, [-1] * len(paths)) for split, paths in splits.items()}, description


@dataclasses.dataclass(frozen=True)
class CelebAAttributes:
    """CelebA's binary attributes (list_attr_celeba.txt).

    Attributes:
      path: the file they were read from.
      names: the attribute names in file order (40 in CelebA: 5_o_Clock_Shadow ... Young).
      files: the image file names, in file order.
      values: int8 [len(files), len(names)] of -1 / +1.
    """

    path: pathlib.Path
    names: tuple[str, ...]
    files: tuple[str, ...]
    values: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """{image file name: int8 [len(names)]}."""
        return dict(zip(self.files, self.values))

    def for_files(self, files: Sequence[str | pathlib.Path]) -> np.ndarray:
        """int8 [len(files), len(names)] rows for image files (names or paths; only the
        base name is looked up), e.g. a split of `split_files`, in that order."""
        row = {name: index for index, name in enumerate(self.files)}
        names = [pathlib.Path(f).name for f in files]
        missing = [name for name in names if name not in row]
        if missing:
            raise DataError(
                f"{self.path} has no attributes for {missing[0]} (nor for {len(missing) - 1} "
                f"more of the {len(names)} images); use the attribute file of these images."
            )
        return self.values[[row[name] for name in names]].reshape(len(names), len(self.names))


def read_celeba_attributes(path: str | pathlib.Path) -> CelebAAttributes:
    """Reads CelebA's list_attr_celeba.txt: a count line, a line of attribute names, then
    one row `<file> v_1 ... v_n` per image with values -1 or 1 (LF or CRLF line ends).
    Raises a DataError naming the file (and line) when it does not have this format."""
    path = pathlib.Path(path)
    fix = "use CelebA's original list_attr_celeba.txt (count line, names line, -1/1 rows)."
    lines = [line for line in _annotation_lines(path, fix) if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit():
        found = repr(lines[0].strip()[:60]) if lines else "an empty file"
        raise DataError(f"{path} line 1: expected the number of images, found {found}; {fix}")
    count, names = int(lines[0]), tuple(lines[1].split())
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(
            f"{path}: line 1 announces {count} images but {len(rows)} rows follow (truncated "
            f"or edited); {fix}"
        )
    files, values = [], []
    for number, row in enumerate(rows, start=3):
        fields = row.split()
        if len(fields) != len(names) + 1 or not all(v in ("1", "-1") for v in fields[1:]):
            raise DataError(
                f"{path} line {number}: expected '<image file>' and {len(names)} values -1 or 1, "
                f"found {row.strip()[:100]!r}; {fix}"
            )
        files.append(fields[0])
        values.append(fields[1:])
    if not names or len(set(files)) != len(files):
        problem = "no attribute names on line 2" if not names else "an image listed twice"
        raise DataError(f"{path} has {problem}; {fix}")
    array = np.asarray(values, dtype=np.int8).reshape(len(files), len(names))
    return CelebAAttributes(path, names, tuple(files), array)


def celeba_attributes(data_dir: str) -> CelebAAttributes:
    """The attributes of a local CelebA folder: list_attr_celeba.txt found like the
    partition file (the image folder or one of its parents up to data_dir's parent)."""
    root = pathlib.Path(data_dir).expanduser().resolve()
    image_dir = flat_image_dir(root) if root.is_dir() else root
    path = find_annotation(image_dir, root, ATTRIBUTE_FILES) if root.is_dir() else None
    if path is None:
        raise DataError(
            f"No {ATTRIBUTE_FILES[0]} in {image_dir} or its parents up to {root.parent}; "
            f"put CelebA's attribute file next to img_align_celeba/."
        )
    return read_celeba_attributes(path)


def celeba_attribute_file(name: str, data_dir: str | None) -> pathlib.Path | None:
    """The list_attr_celeba.txt that belongs to a local CelebA image folder (found like the
    partition file), or None: no such file, not CelebA, not local image files."""
    if get_spec(name).name != "celeb_a" or not data_dir:
        return None
    root = pathlib.Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        return None
    return find_annotation(flat_image_dir(root), root, ATTRIBUTE_FILES)
