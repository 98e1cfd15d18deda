"""The modules of coterie.node.server import each other without a cycle: every import counts, at
module level, inside a function or under ``if TYPE_CHECKING`` (a lazy import that hides a cycle is
still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import coterie.node.server as server_pkg

PACKAGE = "coterie.node.server"


def _server_modules() -> dict[str, Path]:
    root = Path(next(iter(server_pkg.__path__)))
    return {p.stem: p for p in sorted(root.glob("*.py")) if p.stem != "__init__"}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sibling modules ``path`` imports, by name."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module or ""
            elif node.level == 0 and node.module and node.module.startswith(PACKAGE + "."):
                base = node.module[len(PACKAGE) + 1:]
            elif node.level == 0 and node.module == PACKAGE:
                base = ""
            else:
                continue
            if base:
                out.add(base.split(".")[0])
            else:  # from . import x / from coterie.node.server import x
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PACKAGE + "."):
                    out.add(a.name[len(PACKAGE) + 1:].split(".")[0])
    return out & modules


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (found := visit(n)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_the_finder_sees_imports_and_cycles() -> None:
    modules = _server_modules()
    assert {"services", "members", "status", "info", "kv_codec", "raft_codec"} <= set(modules)
    assert "driver" in _imports(modules["services"], set(modules))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_server_modules() -> None:
    modules = _server_modules()
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
