"""The house's shape, read from the source with ``ast``: no import circle among the studio's
modules, no module over 600 lines (migrations apart), and the experiment reaches a task only
through the registry (no task imports the experiment)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("polyp_core", "studio_ui", "review_db")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    out["app"] = ROOT / "app.py"
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The studio modules ``name`` imports, anywhere in the file (inside functions and
    ``TYPE_CHECKING`` blocks too: a circle is a circle, even when Python tolerates it)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # the module itself, or the nearest package above it that is a studio module
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_circle():
    """The checker itself: a -> b -> c -> a is one circle, d -> a is not part of it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_relative_and_nested_forms(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from . import sibling\nfrom ..up import thing\n"
                      "def f():\n    import pkg.deep.mod\n")
    known = {"pkg.sub.sibling", "pkg.up", "pkg.deep"}
    assert _imports("pkg.sub.m", source, known) == {"pkg.sub.sibling", "pkg.up", "pkg.deep"}


def test_no_import_circle_among_the_studios_modules():
    cycles = _cycles(_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_600_lines_outside_migrations():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("module", ["polyp_core.tasks.classify", "polyp_core.tasks.segment"])
def test_no_task_imports_the_experiment(module):
    graph = _graph()
    assert not {t for t in graph[module] if t.startswith("polyp_core.experiment")}


def test_the_experiment_names_no_task_outside_the_registry():
    graph = _graph()
    experiment = [name for name in graph if name.startswith("polyp_core.experiment")]
    reach = {name: sorted(t for t in graph[name] if t.startswith("polyp_core.tasks."))
             for name in experiment}
    assert {k: v for k, v in reach.items() if v} == {}
    from polyp_core.tasks import REGISTRY, task

    for name, module in REGISTRY.items():
        assert task(name).__name__ == module
    with pytest.raises(ValueError, match="unknown task 'detection'; one of classification"):
        task("detection")
