"""Imports: every module imports on its own, the import graph has no cycle, and the suite registry stays light.

The graph counts every ``import`` statement of ``marlbench`` and ``algorithms``, at module
level and inside functions, plus the package ``__init__`` files an import runs on the way
(importing ``marlbench.data.importers.base`` from outside ``marlbench.data`` runs
``marlbench/data/__init__.py`` and ``marlbench/data/importers/__init__.py`` first). Imports
under ``if TYPE_CHECKING:`` never run and are left out; so are ``importlib`` imports by
name (the registries' discovery), which the fresh-interpreter check covers.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("marlbench", "algorithms")
pytestmark = pytest.mark.timeout(120)


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, module: str) -> list[str]:
    """Dotted names a module imports (``from a import b`` gives ``a.b`` and ``a``), anywhere but
    under ``if TYPE_CHECKING:``."""
    is_package = path.name == "__init__.py"
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.append(source)
            names.extend(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the packages that importing it runs directly."""
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        if path.name == "__init__.py":
            own_packages.add(module)
        for name in imported_names(path, module):
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            # the module itself (``from a import b`` where b is a module), else the package
            while parts and ".".join(parts) not in files:
                parts.pop()
            target = ".".join(parts)
            if not target or target == module:
                continue
            graph[module].add(target)
            # the packages on the way that are not already running for this module
            for i in range(1, len(parts)):
                ancestor = ".".join(parts[:i])
                if ancestor not in own_packages and ancestor != module:
                    graph[module].add(ancestor)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "marlbench.suites" in graph and "marlbench.suites.matrix.games" in graph
    assert "marlbench.suites" in graph["marlbench.data.importers"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles_through_package_inits() -> None:
    graph = {"p": {"p.a"}, "p.a": {"q.b"}, "q": set(), "q.b": {"p"}}
    assert find_cycle(graph) == ["p", "p.a", "q.b", "p"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


IMPORT_EACH = textwrap.dedent(
    """
    import importlib, json, sys, traceback
    packages, modules = sys.argv[1], json.loads(sys.argv[2])
    failures = {}
    for name in modules:
        for loaded in [key for key in sys.modules if key.split(".")[0] in packages.split(",")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except BaseException:
            failures[name] = traceback.format_exc()
    print(json.dumps(failures))
    """
)


def test_every_module_imports_on_its_own() -> None:
    """One interpreter; before each module every module of the packages is dropped from
    ``sys.modules`` (third-party ones such as torch stay loaded), so each import starts from
    nothing of ours, as in a fresh interpreter."""
    modules = sorted(module_files())
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, ",".join(PACKAGES), json.dumps(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=110,
    )
    assert completed.returncode == 0, completed.stderr
    failures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{trace}" for name, trace in failures.items())


LIGHT = textwrap.dedent(
    """
    import json, sys
    heavy = ("torch", "mujoco", "gymnasium", "gymnasium_robotics", "h5py", "stable_baselines3")
    import marlbench.suites as registry
    alone = sorted(name for name in sys.modules if name.startswith("marlbench.suites."))
    suites = sorted(registry.all_suites())
    print(json.dumps({
        "alone": alone,
        "suites": suites,
        "heavy": sorted(name for name in heavy if name in sys.modules),
        "builtin": registry.builtin_suite_packages(),
    }))
    """
)


def test_the_registry_imports_no_suite_and_discovery_no_torch_or_simulator() -> None:
    completed = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert found["alone"] == []
    assert found["builtin"] == ["marlbench.suites.mamujoco", "marlbench.suites.matrix"]
    assert {"matrix", "mamujoco"} <= set(found["suites"])
    assert found["heavy"] == []
