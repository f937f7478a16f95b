"""The package layers hold: no import cycle among mentalchat's packages, and stages never import each other.

Every ``import`` and ``from ... import`` statement of every module is read, deferred ones inside
functions included (those are the easiest to add without noticing). ``if TYPE_CHECKING:`` blocks
count too: a type-only cycle is still a design cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mentalchat"

#: The five stage packages, and the human-study tool beside them: each may import the layers
#: below, never another stage.
STAGES = {"dataset", "finetune", "generate", "judge", "stats", "human_study"}
#: What a stage may import (besides itself and the standard library / third parties).
BELOW_STAGES = {"core", "engine", "models", "safety", "io", "schemas", "config", "errors", "secrets"}
#: Layers nothing below the stages may import.
ABOVE_STAGES = {"pipeline", "cli", "testing"}


def _unit(module: str) -> str:
    """The package (or top-level module) a dotted mentalchat module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<mentalchat>"


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported mentalchat module, line) for every import statement in ``path``."""
    module, is_pkg = _module_name(path)
    return imports_in(path.read_text(encoding="utf-8"), module, is_pkg=is_pkg)


def imports_in(source: str, module: str, *, is_pkg: bool = False) -> list[tuple[str, int]]:
    """The same for the source of ``module``: absolute, relative and deferred imports alike."""
    tree = ast.parse(source)
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names if a.name.startswith("mentalchat"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("mentalchat"):
                continue
            if target == "mentalchat":  # from mentalchat import x: x is the unit
                out.extend((f"mentalchat.{a.name}", node.lineno) for a in node.names)
            else:
                out.append((target, node.lineno))
    return out


def unit_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ["file:line", ...] (edges between different units only)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _unit(_module_name(path)[0])
        for target, line in imports_of(path):
            dst = _unit(target)
            if dst != src:
                graph[src][dst].append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def find_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(graph) | {w for e in graph.values() for w in e}):
        if v not in index:
            visit(v)
    return out


def _describe(graph: dict[str, dict[str, list[str]]], units: list[str]) -> str:
    lines = []
    for a in units:
        for b in units:
            if b in graph.get(a, {}):
                lines.append(f"  {a} -> {b}: {', '.join(graph[a][b][:3])}")
    return "\n".join(lines)


def test_no_import_cycle_among_packages() -> None:
    graph = unit_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among mentalchat's packages:\n" + "\n".join(
        f"{' <-> '.join(c)}\n{_describe(graph, c)}" for c in cycles
    )


def _forbidden(sources: set[str], allowed: Callable[[str], bool]) -> str:
    """The edges from ``sources`` to units ``allowed`` rejects, one line each (empty when none)."""
    graph = unit_graph()
    wrong = sorted(
        (src, dst, where)
        for src, edges in graph.items()
        if src in sources
        for dst, where in edges.items()
        if not allowed(dst)
    )
    return "\n".join(f"  {a} -> {b}: {', '.join(w[:3])}" for a, b, w in wrong)


def test_stages_import_only_the_layers_below() -> None:
    wrong = _forbidden(STAGES, lambda dst: dst in BELOW_STAGES)
    assert not wrong, "stage packages import other stages or upper layers:\n" + wrong


def test_lower_layers_never_import_stages_or_upper_layers() -> None:
    wrong = _forbidden(BELOW_STAGES, lambda dst: dst not in STAGES | ABOVE_STAGES)
    assert not wrong, "a layer below the stages imports a stage or an upper layer:\n" + wrong


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b": ["x"]}, "b": {"c": ["y"]}}, []),
        ({"a": {"b": ["x"]}, "b": {"a": ["y"]}}, [["a", "b"]]),
        ({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, dict[str, list[str]]], expected: list[list[str]]) -> None:
    assert find_cycles(graph) == expected


def test_every_kind_of_import_is_read() -> None:
    """Imports inside functions, relative imports and ``from mentalchat import x`` are edges too."""
    source = (
        "import os\n"
        "from mentalchat.core import rubric\n"
        "from . import means\n"
        "from ..judge import items\n"
        "from mentalchat import fastchat\n"
        "def f():\n"
        "    from mentalchat.judge.run import run_judge\n"
        "    import mentalchat.dataset.build\n"
        "    return run_judge\n"
    )
    found = imports_in(source, "mentalchat.stats.run")
    assert found == [
        ("mentalchat.core", 2), ("mentalchat.stats", 3), ("mentalchat.judge", 4), ("mentalchat.fastchat", 5),
        ("mentalchat.judge.run", 7), ("mentalchat.dataset.build", 8),
    ]
