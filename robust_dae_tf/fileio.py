"""Atomic file and directory writes: nothing half-written is ever left under a final name.

* `atomic_write(path, write)`: the one file writer of the package. `write(f)` fills a
  temporary sibling `<path>.tmp-<pid>` (opened for binary writing), which is renamed to
  `path` when it returns (parent directories are created; on failure the temporary file
  is removed and `path` is untouched). On top of it: `write_bytes_atomic`,
  `write_text_atomic` (UTF-8) and `write_json_atomic` (indented, sorted keys; NumPy
  scalars and arrays, and tensors, become JSON numbers and lists).
* `atomic_directory(path, overwrite)`: a context manager yielding a temporary sibling
  directory; on success it is renamed to `path` (replacing an existing one only when
  `overwrite`), on failure it is removed and `path` is untouched.
* `check_writable(path, flag, directory)`: fails early, naming the flag, when an output
  file or directory could not be written; creates nothing.
* Full disks: `check_free_space(path, needed)` fails before expensive work whose output
  size is known; `disk_full_error(err, path)` maps an ENOSPC `OSError` or TensorFlow's
  "No space left on device" (`ResourceExhaustedError` of SaveV2 and file writes) to one
  `DiskFullError` naming the path (and the space needed when known), and
  `writes_to(path, needed)` applies it to the writes of a block.

The temporary siblings are `<path>.tmp-<pid>` and, while replacing, `<path>.old-<pid>`.
A process killed at the wrong moment leaves them behind; `atomic_directory` removes
those of processes that are no longer running when it starts (pids are checked on this
host, so the run directory must not be shared by processes of several machines), and
moves an `.old` copy back when the kill came between the two renames of a replacement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from typing import BinaryIO, Callable

import numpy as np

from robust_dae_tf.errors import ConfigError, DiskFullError, ExportError

logger = logging.getLogger(__name__)


def array_digest(*arrays) -> str:
    """SHA-256 hex digest of arrays, each with its dtype and shape: what identifies the
    images of a cached attack run (`evaluation.robustness`, `attacks.check`)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> str:
    """Writes a file through `write(f)` (`f` a binary file) under a temporary name and
    renames it to `path`; returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def write_bytes_atomic(path: str, data: bytes) -> str:
    return atomic_write(path, lambda f: f.write(data))


def write_text_atomic(path: str, text: str) -> str:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(value):
    """NumPy scalars -> Python numbers, arrays -> lists, other numbers (e.g. scalar
    tensors) -> float, anything else -> its str."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def write_json_atomic(path: str, payload) -> str:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_json_default))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except (OverflowError, ValueError):  # not a valid pid
        return False
    return True


def remove_stale_siblings(path: str) -> None:
    """Removes `<path>.tmp-<pid>` / `<path>.old-<pid>` of processes that are not running;
    an `.old` copy is moved back to `path` when `path` is missing."""
    parent, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        return
    pattern = re.compile(re.escape(base) + r"\.(tmp|old)-(\d+)")
    for name in sorted(os.listdir(parent)):  # ".old-" sorts before ".tmp-"
        match = pattern.fullmatch(name)
        if not match or _pid_alive(int(match.group(2))):
            continue
        stale = os.path.join(parent, name)
        if match.group(1) == "old" and not os.path.exists(path):
            os.replace(stale, path)
            logger.warning("Restored %s from %s, left by a process killed while replacing it.", path, stale)
        else:
            shutil.rmtree(stale, ignore_errors=True)
            logger.info("Removed %s, left by process %s that no longer runs.", stale, match.group(2))


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False, flag: str = "--overwrite"):
    """Yields a temporary directory that becomes `path` when the block succeeds.

    Raises ExportError before doing anything when `path` exists and not `overwrite`
    (`flag` names the option that allows replacing it)."""
    path = os.path.abspath(path)
    remove_stale_siblings(path)  # first: it may move an interrupted replacement's old copy back
    if os.path.exists(path) and not overwrite:
        raise ExportError(f"{path} exists; choose another output path or pass {flag}.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.exists(path):
            old = f"{path}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_writable(path: str, flag: str, directory: bool = False) -> str:
    """`path` (absolute) if it can be written as a file (or, with `directory`, created or
    filled as a directory), else one ConfigError naming `flag`, the option that chose it.

    Meant to run before any long work, and creates nothing: `path` must not exist as the
    other kind, the nearest existing ancestor must be a directory, and a probe file must
    be creatable there (in `path` itself when it is an existing directory, and in its
    parent too, where the temporary siblings and lock files go)."""
    path = os.path.abspath(path)
    want = "a directory" if directory else "a file"
    if os.path.exists(path) and os.path.isdir(path) != directory:
        raise ConfigError(f"{flag}={path} exists and is not {want}; pass {want} path.")
    ancestor = os.path.dirname(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ConfigError(f"{flag}={path} cannot be written: {ancestor} is a file, not a directory; pass a path "
                          "in a directory.")
    for place in ([path] if directory and os.path.isdir(path) else []) + [ancestor]:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=place)
            os.close(fd)
            os.remove(probe)
        except OSError as err:
            raise ConfigError(f"{flag}={path} cannot be written: no write permission in {place} "
                              f"({err.strerror or err}); pass a writable path.") from err
    return path


# ------------------------------------------------------------------ full disks

_NO_SPACE = "No space left on device"


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024


def free_bytes(path: str) -> int:
    """Bytes free for this user on the file system `path` (or its nearest existing ancestor) is on."""
    return shutil.disk_usage(_nearest_existing(path)).free


def check_free_space(path: str, needed: int, what: str) -> None:
    """DiskFullError before writing `what` (about `needed` bytes) to `path` when its file
    system has less free space."""
    free = free_bytes(path)
    if free < needed:
        raise DiskFullError(f"not enough space for {what} at {os.path.abspath(path)}: it needs about "
                            f"{format_bytes(needed)}, {format_bytes(free)} are free; free some space or choose "
                            "another path.")


def is_disk_full(err: BaseException) -> bool:
    """An ENOSPC OSError, or a TensorFlow error (e.g. ResourceExhaustedError of SaveV2) saying so."""
    import errno  # pylint: disable=import-outside-toplevel

    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return type(err).__module__.startswith("tensorflow") and _NO_SPACE in str(err)


def disk_full_error(err: BaseException, path: str, needed: int | None = None) -> DiskFullError:
    """The one-line DiskFullError for `err` (see `is_disk_full`) while writing `path`
    (the file the OSError names, if any, is named instead)."""
    path = os.path.abspath(getattr(err, "filename", None) or path)
    free = free_bytes(path)
    need = f"about {format_bytes(needed)} are needed, " if needed else ""
    return DiskFullError(f"no space left on the device of {path} ({need}{format_bytes(free)} free); free some "
                         "space (or choose another output path) and run the same command again.")


@contextlib.contextmanager
def writes_to(path: str, needed: int | None = None):
    """Maps a full disk in the block's writes to `path` to `disk_full_error`."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only full-disk errors are mapped, the rest re-raised
        if is_disk_full(err):
            raise disk_full_error(err, path, needed) from err
        raise


def checkpoint_bytes(prefix: str | None) -> int | None:
    """Bytes of the files of the TensorFlow checkpoint `prefix` (`<prefix>.index`,
    `<prefix>.data-*`); None without one."""
    import glob  # pylint: disable=import-outside-toplevel

    files = [p for p in glob.glob(glob.escape(prefix) + ".*") if os.path.isfile(p)] if prefix else []
    return sum(os.path.getsize(p) for p in files) or None


def path_in_message(err: BaseException) -> str | None:
    """The file an error is about: OSError.filename, else the first absolute path in its
    message (TensorFlow names the file it failed to write)."""
    if getattr(err, "filename", None):
        return str(err.filename)
    match = re.search(r"(/[^\s;:'\",]+)", str(err))
    return match.group(1) if match else None
