"""The package's shape: no module over 600 lines, no import cycle among its modules.

Imports are read with `ast` from every module of the package, including the ones deferred
into functions (a deferred import still makes the two modules depend on each other).
`from robust_dae_tf.x import y` counts as an import of the module `robust_dae_tf.x.y` when
that module exists, else of `robust_dae_tf.x`. A package's `__init__` is the module named
after the package; importing a submodule does not count as importing its parent package.
"""

from __future__ import annotations

import ast
import pathlib

import robust_dae_tf

MAX_LINES = 600
PACKAGE = pathlib.Path(robust_dae_tf.__file__).parent
NAME = "robust_dae_tf"


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if not level:
        return module
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                candidates = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules:  # `import a.b.c` of a non-module name
                    candidate = candidate.rpartition(".")[0]
                if candidate.startswith(NAME) and candidate != name and candidate != NAME:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str):
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_module_over_600_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_a_cycle_and_the_package_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert f"{NAME}.errors" in graph[f"{NAME}.losses"] or graph[f"{NAME}.losses"]  # edges are found


# Layers, lowest first: a module never imports one of a layer above its own (an evaluation
# reads top-down: measurements, then reports, then the pipeline that runs them, then the CLI).
LAYER_ABOVE = {
    "measurements": ("data", "models", "baselines", "attacks", "metrics", "evaluation"),
    "reports": ("reporting",),
    "pipeline": ("pipeline",),
    "cli": ("cli",),
}


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    for rank, packages in enumerate(LAYER_ABOVE.values()):
        if top in packages:
            return rank
    return None  # building blocks (losses, export, fileio, ...): usable from every layer


def test_no_layer_imports_a_layer_above_it():
    climbs = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if _layer(module) is not None and _layer(target) is not None and _layer(target) > _layer(module)
    ]
    assert not climbs, "imports of a higher layer: " + "; ".join(climbs)
