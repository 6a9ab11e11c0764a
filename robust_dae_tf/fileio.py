"""Atomic file and directory writes: nothing half-written is ever left under a final name.

* `write_json_atomic(path, payload)`: JSON to `path.tmp`, then `os.replace`.
* `atomic_directory(path, overwrite)`: a context manager yielding a temporary sibling
  directory; on success it is renamed to `path` (replacing an existing one only when
  `overwrite`), on failure it is removed and `path` is untouched.
* `check_writable_directory(directory, flag)`: fails early, naming the flag, when an
  output directory cannot be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from robust_dae_tf.errors import ConfigError, ExportError


def write_json_atomic(path: str, payload) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=float)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False, flag: str = "--overwrite"):
    """Yields a temporary directory that becomes `path` when the block succeeds.

    Raises ExportError before doing anything when `path` exists and not `overwrite`
    (`flag` names the option that allows replacing it)."""
    path = os.path.abspath(path)
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


def check_writable_directory(directory: str, flag: str) -> None:
    """Creates `directory` if needed and writes (and removes) a probe file in it, so an
    output that cannot be written is reported before any expensive work. Raises
    ConfigError naming `flag`, the option that chose the directory."""
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=directory)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        blocker = os.path.abspath(directory)
        while not os.path.exists(blocker) and os.path.dirname(blocker) != blocker:
            blocker = os.path.dirname(blocker)
        reason = f"{blocker} is a file, not a directory" if not os.path.isdir(blocker) else err.strerror or str(err)
        raise ConfigError(
            f"cannot write to {directory} ({reason}), which {flag} needs; "
            f"choose another {flag} or make it writable."
        ) from err
