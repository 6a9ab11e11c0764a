"""Atomic file and directory writes: nothing half-written is ever left under a final name.

* `write_json_atomic(path, payload)`: JSON to `path.tmp`, then `os.replace`.
* `atomic_directory(path, overwrite)`: a context manager yielding a temporary sibling
  directory; on success it is renamed to `path` (replacing an existing one only when
  `overwrite`), on failure it is removed and `path` is untouched.
* `check_writable_directory(directory, flag)`: fails early, naming the flag, when an
  output directory cannot be written.

The temporary siblings are `<path>.tmp-<pid>` and, while replacing, `<path>.old-<pid>`.
A process killed at the wrong moment leaves them behind; `atomic_directory` removes
those of processes that are no longer running when it starts (pids are checked on this
host, so the run directory must not be shared by processes of several machines), and
moves an `.old` copy back when the kill came between the two renames of a replacement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile

from robust_dae_tf.errors import ConfigError, ExportError

logger = logging.getLogger(__name__)


def write_json_atomic(path: str, payload) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=float)
    os.replace(tmp, path)


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
