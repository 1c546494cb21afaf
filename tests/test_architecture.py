"""The package's import graph has no cycle: data flows one way (dataset → model → descriptors → index →
metrics → record) and the CLI only wires things together. Every import counts, also one inside a
function: a cycle hidden in a function body is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import vpr_bench

PACKAGE = Path(vpr_bench.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The vpr_bench modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub`` when sub is
    a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Each package and what it may import (README.md, "Layout"): data flows one way.
ALLOWED = {
    "errors": set(),
    "_io": {"errors"},
    "registry": {"errors"},
    "options": {"errors"},
    "config": {"errors", "registry"},
    "layers": set(),
    "datasets": {"config", "errors", "registry", "_io"},
    "methods": {"config", "errors", "layers", "options", "registry"},
    "losses": {"errors", "registry"},
    "evaluation": {"config", "datasets", "errors", "registry"},
    "checkpoints": {"errors", "registry"},
    "distributed": {"errors"},
    "training": {
        "config",
        "datasets",
        "errors",
        "evaluation",
        "losses",
        "methods",
        "checkpoints",
        "distributed",
        "_io",
    },
    "results": {"config", "datasets", "errors", "evaluation", "_io"},
    "plugins": {"registry"},
    "vpr_bench": {"datasets", "evaluation", "losses", "methods", "plugins"},
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vpr_bench"


def test_each_package_imports_only_what_the_layout_allows():
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if package_of(module) in ALLOWED
        and package_of(target) != package_of(module)
        and package_of(target) not in ALLOWED[package_of(module)]
    ]
    assert not wrong, "; ".join(sorted(wrong))
