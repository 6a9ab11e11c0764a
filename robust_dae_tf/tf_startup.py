"""Keeps TensorFlow's start-up chatter off stderr (set up by `robust_dae_tf/__init__.py`).

While `import tensorflow` runs, TensorFlow's C++ libraries write lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796575317.353530    5122 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796575317.355642    5122 cudart_stub.cc:31] Could not find cuda drivers ...

straight to file descriptor 2, before TensorFlow reads TF_CPP_MIN_LOG_LEVEL; users read
them as problems. `install()` puts a finder on `sys.meta_path` that, on the first import of
the top-level `tensorflow` package (directly, or through Keras), sends descriptor 2 to a
temporary file for the duration of that import and then writes back every line that is not
such a start-up note (`is_startup_noise`): Python warnings and errors raised while importing
still reach stderr. It also sets TF_CPP_MIN_LOG_LEVEL=3 unless the user set it (TensorFlow's
later C++ INFO/WARNING log lines). Nothing numerical changes (TF_ENABLE_ONEDNN_OPTS is left
as it is).

`ROBUST_DAE_TF_VERBOSE_TF=1` in the environment turns all of this off: the start-up lines
and TensorFlow's C++ log are shown as TensorFlow prints them.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

VERBOSE_ENV = "ROBUST_DAE_TF_VERBOSE_TF"

_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.]+:\d+\] .*"  # absl INFO lines (oneDNN, cudart, cpu features)
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_startup_noise(line: str) -> bool:
    """True for the lines TensorFlow's C++ code prints while it is imported."""
    return bool(_NOISE.fullmatch(line.rstrip("\r\n")))


@contextlib.contextmanager
def startup_lines_hidden():
    """Captures file descriptor 2 in the block; afterwards writes back every captured line
    that is not start-up noise (all of them when the block raised)."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or not is_startup_noise(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders and runs its module code inside
    `startup_lines_hidden`; removes itself from `sys.meta_path` on first use."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            with startup_lines_hidden():
                run(module)

        spec.loader.exec_module = exec_module  # this spec's own loader object only
        return spec


def install() -> None:
    """Hides the start-up lines of the TensorFlow import that follows (see the module
    docstring); does nothing with ROBUST_DAE_TF_VERBOSE_TF=1 or when TensorFlow is
    already imported."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())
