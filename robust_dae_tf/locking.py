"""Run ownership: one process at a time may write a run directory, an export target or
an evaluation output.

    with locking.lock_directory(workdir, "--workdir"):
        ...  # nobody else writes workdir until the block ends

The lock is the file `<path>.lock` next to the directory (a sibling, so it survives the
directory being replaced by an atomic rename), held with an exclusive `flock` and
holding one JSON line that names its owner: pid, host, command and start time. A
second process that asks for the same directory gets a `DirectoryInUseError` whose
one-line message names the owner.

The kernel releases a `flock` when its process ends, however it ends (kill -9
included), so a lock file left behind by a dead process is simply taken over, with a
warning naming the process that left it. This avoids the weak points of lock files
judged by pid alone: recycled pids, pid namespaces (containers) and two processes
taking over the same stale file at once. A finished block removes the lock file.

Where the file system does not support `flock` (or on platforms without `fcntl`), a
warning says that the directory is not protected and the block runs unlocked.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import socket
import sys
import time

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

from robust_dae_tf.errors import UserError

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class DirectoryInUseError(UserError):
    """Another live process holds the lock of a directory this run wants to write."""


def lock_path(path: str) -> str:
    """The lock file of directory `path`: `<path>.lock` next to it (symlinks resolved)."""
    return os.path.realpath(path).rstrip(os.sep) + LOCK_SUFFIX


def _owner() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or sys.executable,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _read_owner(fd: int) -> dict | None:
    """The owner recorded in an open lock file, or None when it is empty or unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", "replace")
        owner = json.loads(text)
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and "pid" in owner else None


def describe_owner(owner: dict | None) -> str:
    """'pid 123 on host h, started 2026-..., command: python bin/train.py ...'."""
    if not owner:
        return "a process that has not yet recorded itself"
    command = " ".join(str(owner.get("command", "?")).split())
    if len(command) > 200:
        command = command[:197] + "..."
    return (f"pid {owner.get('pid')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}, "
            f"command: {command}")


def _open_and_lock(lock_file: str, path: str, flag: str) -> int | None:
    """Opens and locks `lock_file`; returns the descriptor, or None when the file system
    cannot lock. Raises DirectoryInUseError when another process holds it."""
    while True:
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DirectoryInUseError(
                f"cannot create the lock file {lock_file} for {flag}={path} ({err.strerror}); "
                f"{flag} must be in a writable directory."
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = None
            for _ in range(20):  # the owner writes its record right after locking
                owner = _read_owner(fd)
                if owner:
                    break
                time.sleep(0.05)
            os.close(fd)
            if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                raise DirectoryInUseError(
                    f"{flag}={path} is already used by this run for another purpose (lock file {lock_file}); "
                    "give each output its own directory."
                ) from None
            raise DirectoryInUseError(
                f"{flag}={path} is in use by another run ({describe_owner(owner)}; lock file {lock_file}); "
                f"wait for it to finish or stop it, or choose another {flag}."
            ) from None
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        # A releasing owner removes the file after we opened it: lock the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def lock_directory(path: str, flag: str = "directory"):
    """Holds the lock of directory `path` for the block (see the module docstring).

    `path` need not exist; its parent directory is created. `flag` names the option
    that chose `path` in messages (e.g. "--workdir"). Raises `DirectoryInUseError` when
    another process holds it (or the lock file cannot be created). Yields the lock
    file's path."""
    lock_file = lock_path(path)
    try:
        os.makedirs(os.path.dirname(lock_file), exist_ok=True)
    except OSError as err:
        raise DirectoryInUseError(
            f"cannot create the directory of {flag}={path} ({err.strerror}); choose a writable location."
        ) from err
    fd = _open_and_lock(lock_file, path, flag) if fcntl is not None else None
    if fd is None:
        logger.warning("The file system of %s does not support file locks: make sure no other run uses %s=%s.",
                       lock_file, flag, path)
        yield lock_file
        return
    try:
        previous = _read_owner(fd)
        if previous:
            logger.warning("Taking over the lock %s of %s=%s left by a process that has ended (%s).",
                           lock_file, flag, path, describe_owner(previous))
        record = json.dumps(_owner()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        os.fsync(fd)
        yield lock_file
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_file)  # while still locked: nobody else holds this file now
        os.close(fd)
