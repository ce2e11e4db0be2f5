"""The package's shape (issue 31, docs/development.md): no import circle anywhere, deferred imports
inside functions included, and no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attemptctl"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("attemptctl")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("attemptctl"):
            for alias in node.names:  # `from attemptctl.method import lm` imports the submodule lm
                sub = f"{node.module}.{alias.name}"
                found.append((sub, [], node.lineno) if sub in modules else (node.module, [alias.name], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the modules importing it runs: the target itself (a package's __init__ too, even the
    importer's own package: `from attemptctl.tasks import TASKS` inside tasks/ needs tasks/__init__
    finished) and the packages above the target that the importer is not already inside."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(path, modules):
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                inside = name.startswith(prefix + ".")
                if prefix in modules and prefix != name and (prefix == target or not inside):
                    graph[name].add(prefix)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_anywhere_in_the_package():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_is_imported_across_modules():
    modules = _modules()
    crossing = [f"{path.relative_to(ROOT)}:{line}: {name} from {target}"
                for path in modules.values() for target, names, line in _imports(path, modules)
                for name in names if name.startswith("_")]
    assert not crossing, "\n".join(crossing)
