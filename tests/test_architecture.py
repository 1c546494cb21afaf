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


# Each package and what it may import (docs/architecture.md, "Package layout"): data flows one way.
ALLOWED = {
    "errors": set(),
    "_io": {"errors"},
    "settings": {"errors"},
    "published": set(),
    "spec": {"errors", "options", "published"},
    "registry": {"errors", "spec"},
    "options": {"errors", "settings"},
    "config": {"errors", "registry", "settings"},
    "layers": set(),
    "datasets": {"config", "errors", "registry", "_io"},
    "methods": {"config", "errors", "layers", "options", "registry", "checkpoints"},
    "losses": {"errors", "registry"},
    # devices: the cost's device name; distributed: extraction shared over torchrun's ranks; _io: free space
    "evaluation": {"config", "datasets", "devices", "distributed", "errors", "registry", "_io"},
    "checkpoints": {"errors", "registry"},
    "distributed": {"errors"},
    "devices": {"errors"},
    "models_io": {"checkpoints", "config", "methods"},
    "training": {
        "config",
        "datasets",
        "errors",
        "evaluation",
        "losses",
        "methods",
        "checkpoints",
        "devices",
        "distributed",
        "_io",
    },
    "results": {"config", "datasets", "errors", "evaluation", "published", "_io"},
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


# A plugin builds on one public module (and the test-side one in its tests); the project's own plugins and
# the template obey the rule every third-party plugin does.
PLUGIN_SURFACE = {"vpr_bench.api", "vpr_bench.testing"}
PLUGIN_ROOTS = [*sorted((PACKAGE.parent / "plugins").glob("*/")), PACKAGE.parent / "examples"]


def vpr_bench_imports(path: Path) -> set[str]:
    """Every ``vpr_bench`` module ``path`` imports, in any function (``from vpr_bench import x`` counts as
    ``vpr_bench.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "vpr_bench")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vpr_bench":
            if node.module == "vpr_bench":
                found.update(f"vpr_bench.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return found


def test_plugins_import_only_the_public_api():
    files = [p for root in PLUGIN_ROOTS for p in root.rglob("*.py")]
    assert len(files) > 20  # tscm, zoo and the template were found
    wrong = [
        f"{path.relative_to(PACKAGE.parent)} imports {module}"
        for path in files
        for module in sorted(vpr_bench_imports(path) - PLUGIN_SURFACE)
    ]
    assert not wrong, "; ".join(wrong)


def test_the_plugin_rule_catches_a_private_import(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from vpr_bench import _io\nfrom vpr_bench.api import option\n")
    assert vpr_bench_imports(plugin) - PLUGIN_SURFACE == {"vpr_bench._io"}
