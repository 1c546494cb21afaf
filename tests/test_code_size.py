"""Functions stay short enough to read at once and modules short enough to find one's way in (STYLE.md,
rule 16): no function or method over ``MAX_FUNCTION_LINES`` lines, no module over ``MAX_MODULE_LINES``,
in the package and in each plugin (their tests excepted). A function that computes should not also write
files and build record sections: split it into helpers that each do one thing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def source_files() -> list[Path]:
    roots = [ROOT / "vpr_bench", *(p for p in sorted((ROOT / "plugins").iterdir()) if p.is_dir())]
    files = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts
            if "tests" in parts or any(p.startswith(".") or p == "build" for p in parts):
                continue
            files.append(path)
    return files


def offenders(path: Path, root: Path = ROOT) -> list[str]:
    """``path``'s functions over the limit and the module itself if it is, one line each."""
    text = path.read_text()
    name = path.relative_to(root).as_posix()
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: module of {lines} lines (max {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{name}:{node.lineno}: {node.name}() of {length} lines (max {MAX_FUNCTION_LINES})"
                )
    return found


def test_no_function_or_module_is_too_long():
    too_long = [line for path in source_files() for line in offenders(path)]
    assert not too_long, "too long (split into helpers that each do one thing):\n" + "\n".join(too_long)


def test_the_size_check_finds_a_long_function_and_a_long_module(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n")
    assert offenders(path, tmp_path) == ["long.py:6: long() of 81 lines (max 80)"]
    path.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert offenders(path, tmp_path) == ["long.py: module of 401 lines (max 400)"]


def test_the_package_and_the_plugins_are_scanned():
    names = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert "vpr_bench/evaluation/engine.py" in names and "plugins/tscm/tscm/pipeline.py" in names
    assert not any("/tests/" in n for n in names)
