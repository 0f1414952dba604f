"""The architecture holds (issue 15, docs/architecture.md): the import-linter contracts in
pyproject.toml pass, no import cycle hides in a function body, and every import that a function
makes lazily says why."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gc_polecat"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _target(modules: dict[str, Path], current: str, node: ast.AST) -> list[str]:
    """The gc_polecat modules an import statement loads (`from pkg import mod` names mod)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = current.split(".")
            if modules[current].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules and name != current and name.startswith("gc_polecat"):
            out.append(name)
    return out


def _imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Every module's imports of gc_polecat modules (TYPE_CHECKING blocks aside), and each
    import made inside a function as (module, line, source line)."""
    graph: dict[str, set[str]] = defaultdict(set)
    lazy: list[tuple[str, int, str]] = []
    for name, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()

        def visit(node: ast.AST, in_function: bool, name: str = name, lines: list = lines) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = _target(modules, name, child)
                    graph[name].update(targets)
                    if targets and in_function:
                        lazy.append((name, child.lineno, lines[child.lineno - 1]))
                inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, in_function or inner)

        visit(ast.parse(source), False)
    return graph, lazy


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return None


def test_the_import_contracts_hold() -> None:
    """`lint-imports` (import-linter, configured in pyproject.toml) keeps every layer above
    the ones it uses and the domain away from the command line."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("import-linter is part of the test extra: pip install -e '.[test]'")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycle_hides_in_a_function() -> None:
    """With every function-level import counted as a module-level one, the modules form no
    cycle: no import is deferred to dodge one."""
    graph, _ = _imports(_modules())
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check above can fail: a back edge from the store to the controller is a cycle."""
    graph, _ = _imports(_modules())
    graph["gc_polecat.beads.bead"].add("gc_polecat.lifecycle.controller")
    assert _cycle(graph) is not None


def test_every_lazy_import_says_why() -> None:
    """An import inside a function is there for start-up cost only, and says so on its line
    (`# lazy: ...`) or the line before it."""
    modules = _modules()
    _, lazy = _imports(modules)
    unmarked = []
    for name, line, text in lazy:
        before = modules[name].read_text().splitlines()[line - 2] if line > 1 else ""
        if "# lazy" not in text and "# lazy" not in before:
            unmarked.append(f"{name}:{line}: {text.strip()}")
    assert not unmarked, "\n".join(unmarked)
