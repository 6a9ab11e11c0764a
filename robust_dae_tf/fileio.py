"""Atomic file and directory writes: nothing half-written is ever left under a final name.

* `write_json_atomic(path, payload)`: JSON to `path.tmp`, then `os.replace`.
* `atomic_directory(path, overwrite)`: a context manager yielding a temporary sibling
  directory; on success it is renamed to `path` (replacing an existing one only when
  `overwrite`), on failure it is removed and `path` is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from robust_dae_tf.errors import ExportError


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
