"""robust_dae_tf.lazy: lazy re-exports, on a throw-away package and on the project's own."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from robust_dae_tf.lazy import lazy_exports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A package `toy_lazy` whose submodule `heavy` records that it was imported."""
    root = tmp_path / "toy_lazy"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(textwrap.dedent("""
        from robust_dae_tf.lazy import lazy_exports
        IMPORTED = []
        __getattr__, __dir__, NAMES = lazy_exports(__name__, {"heavy": ("VALUE", "double"), "sub.deep": ("DEEP",)})
    """))
    (root / "heavy.py").write_text("import toy_lazy\ntoy_lazy.IMPORTED.append('heavy')\nVALUE = 41\n"
                                   "def double(x):\n    return 2 * x\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "deep.py").write_text("DEEP = 'deep'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("toy_lazy")
    for name in [m for m in sys.modules if m == "toy_lazy" or m.startswith("toy_lazy.")]:
        del sys.modules[name]


def test_names_are_imported_on_first_access_only(toy_package):
    assert toy_package.IMPORTED == [] and "toy_lazy.heavy" not in sys.modules
    assert toy_package.VALUE == 41
    assert toy_package.IMPORTED == ["heavy"]
    assert toy_package.double(3) == 6 and toy_package.IMPORTED == ["heavy"]  # imported once
    assert toy_package.DEEP == "deep"  # a dotted submodule path


def test_a_name_is_the_submodules_object_and_is_cached(toy_package):
    fn = toy_package.double
    assert fn is sys.modules["toy_lazy.heavy"].double
    assert "double" in vars(toy_package)  # later reads skip __getattr__
    from toy_lazy import VALUE  # noqa: PLC0415 (the `from package import name` form works too)
    assert VALUE == 41


def test_unknown_name_is_an_attribute_error_naming_package_and_name(toy_package):
    with pytest.raises(AttributeError, match=r"module 'toy_lazy' has no attribute 'nope'"):
        toy_package.nope  # noqa: B018
    assert not hasattr(toy_package, "nope")


def test_dir_lists_the_lazy_names_before_they_are_loaded(toy_package):
    listing = dir(toy_package)
    assert {"VALUE", "double", "DEEP", "IMPORTED", "NAMES"} <= set(listing)
    assert listing == sorted(listing)
    assert toy_package.NAMES == ("DEEP", "VALUE", "double")
    assert toy_package.IMPORTED == []  # dir() imports nothing


def test_a_name_under_two_modules_is_refused():
    with pytest.raises(ValueError, match=r"'x' is listed under both 'a' and 'b'"):
        lazy_exports("pkg", {"a": ("x",), "b": ("y", "x")})


def test_names_given_as_one_string_are_refused():
    with pytest.raises(TypeError, match=r"sequence of strings, not the string 'abc'"):
        lazy_exports("pkg", {"a": "abc"})


PACKAGES = ("robust_dae_tf", "robust_dae_tf.attacks", "robust_dae_tf.data", "robust_dae_tf.models",
            "robust_dae_tf.pipeline")


def test_every_lazy_name_of_the_project_resolves_and_importing_skips_tensorflow():
    """Importing the five packages does not import TensorFlow, and each of their table entries
    names an object its submodule defines (a typo would only show on first use). One fresh
    interpreter: all imports first, then every name."""
    probe = textwrap.dedent(f"""
        import importlib, sys
        packages = [importlib.import_module(name) for name in {PACKAGES!r}]
        assert "tensorflow" not in sys.modules, "importing the packages imported TensorFlow"
        for pkg in packages:
            names = [n for n in dir(pkg) if n not in vars(pkg)]
            assert names, f"{{pkg.__name__}}: no lazy names"
            for n in names:
                getattr(pkg, n)
            print(pkg.__name__, len(names))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(PACKAGES)
