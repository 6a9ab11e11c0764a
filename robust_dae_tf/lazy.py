"""Lazy re-exports (PEP 562) for the packages whose submodules import TensorFlow.

`import robust_dae_tf.data` (or `.models`, `.pipeline`, `.attacks`, the package itself)
must not import TensorFlow, so that a script checks its flags and paths in well under a
second before paying for it. Such a package names its re-exports in a table and installs
the module functions this helper builds:

    __getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, {"splits": ("load_splits",), ...})

A name is imported from its submodule on first access and then stored in the package's
namespace, so later look-ups are ordinary attribute reads. This module imports nothing
beyond the standard library.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(package: str,
                 exports: Mapping[str, Iterable[str]]) -> tuple[Callable[[str], object], Callable[[], list[str]],
                                                                tuple[str, ...]]:
    """The `__getattr__` and `__dir__` of `package`, and the sorted names they export.

    `exports` maps a submodule of `package` (relative, e.g. "sources.celeba") to the names
    re-exported from it. A name listed under two submodules is a ValueError (which one
    would win is not obvious to a reader)."""
    module_of: dict[str, str] = {}
    for module, names in exports.items():
        if isinstance(names, str):
            raise TypeError(f"lazy_exports({package!r}): the names of {module!r} must be a sequence of "
                            f"strings, not the string {names!r}")
        for name in names:
            if name in module_of:
                raise ValueError(f"lazy_exports({package!r}): {name!r} is listed under both "
                                 f"{module_of[name]!r} and {module!r}")
            module_of[name] = module

    def __getattr__(name: str):  # noqa: N807 (the module-level hook's required name)
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__, tuple(sorted(module_of))
