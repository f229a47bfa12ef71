"""The shape of the code: no import cycles, layers that import downward, test scaffolding kept out of the
product, every command listed, the public API importable without torch."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Modules the product never imports: test scaffolding (tiny models, tiny corpora).
SCAFFOLDING = ("pipeline.testing",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in ("pipeline", "data_prep") for p in (ROOT / package).rglob("*.py")}


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of the tree it imports anywhere (module level or inside a function)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _unit(module: str) -> str:
    """The package-level unit of a module: ``data_prep``, or ``pipeline.<subpackage or module>``."""
    parts = module.split(".")
    return "data_prep" if parts[0] == "data_prep" else ".".join(parts[:2])


def test_no_module_imports_itself_through_others():
    assert _cycles(_imports(_modules())) == []


def test_no_two_packages_import_each_other():
    units: dict[str, set[str]] = defaultdict(set)
    for a, targets in _imports(_modules()).items():
        units[_unit(a)].update(_unit(b) for b in targets if _unit(b) != _unit(a))
    units.pop("pipeline", None)  # the API and the top-level package re-export, by design
    assert _cycles(units) == []


def test_data_prep_never_imports_the_pipeline():
    offenders = sorted(a for a, targets in _imports(_modules()).items()
                       if a.startswith("data_prep") and any(t.startswith("pipeline") for t in targets))  # fmt: skip
    assert offenders == []


def test_the_product_never_imports_test_scaffolding():
    graph = _imports(_modules())
    offenders = sorted(f"{a} -> {t}" for a, targets in graph.items() if not a.startswith(SCAFFOLDING)
                       for t in targets if t.startswith(SCAFFOLDING))  # fmt: skip
    assert offenders == []


def test_the_checks_can_fail():
    """The cycle finder sees a cycle, through a function-level import too."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_command_module_is_listed_by_help():
    import pipeline.cli as cli
    from pipeline.cli import COMMANDS

    modules = {m.name for m in pkgutil.iter_modules(cli.__path__)} - {"options"}
    assert {module.rpartition(".")[2] for module, _ in COMMANDS.values()} == modules
    for module, _ in COMMANDS.values():
        m = importlib.import_module(module)
        assert callable(m.add_arguments) and callable(m.run), module
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout  # fmt: skip
    assert all(f"  {name} " in out for name in COMMANDS), out


def test_library_modules_define_no_command_line():
    """argparse lives in pipeline/cli only: the library is what the API and the commands call."""
    offenders = sorted(name for name, path in _modules().items() if not name.startswith(("pipeline.cli",))
                       and "import argparse" in path.read_text(encoding="utf-8"))  # fmt: skip
    assert offenders == []


@pytest.mark.parametrize("name", ["pipeline", "pipeline.decode", "pipeline.api"])
def test_the_api_imports_without_torch(name):
    code = f"import sys, {name}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_the_api_lists_its_functions_with_docstrings():
    import pipeline

    assert pipeline.__all__ and all(callable(getattr(pipeline, n)) and getattr(pipeline, n).__doc__
                                    for n in pipeline.__all__)  # fmt: skip
