"""``examples/plugin-template`` as a researcher uses it: copied, installed (into a throw-away folder, never
the project's .venv), found through its entry point by ``vpr-bench list``/``eval``/``ablate`` run as
subprocesses, its own tests passing, and gone again once uninstalled."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vpr_bench.testing import TINY_CLI

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin-template"
# plugins/tscm/tests: the tiny teacher/student (test_resnet + test_vit) and the smallest training budget
TINY_TSCM = [
    *TINY_CLI,
    *("--backbone-stage", "3", "--descriptor-dim", "256"),
    *(f"--model-option={o}" for o in ("vit=test_vit", "vit_patch_size=16", "width=32", "clusters=4")),
    "--model-option=patch_dim=16",
]
BUDGET = "--epochs 1 --queries-per-epoch 8 --batch-size 4 --negatives 2 --negative-samples 20".split()
TIMEOUT_S = 300


@dataclass
class Installed:
    copy: Path  # the researcher's copy of the template
    site: Path  # where pip installed it
    out: Path  # --out of every run
    env: dict[str, str]  # PYTHONPATH=site: importlib.metadata finds the entry point there
    ablation: subprocess.Popen  # the slow `ablate`, started at once so the other calls overlap it
    ablation_log: Path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vpr_bench", *args],
            env=env or self.env,
            cwd=self.out,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )


def install(source: Path, root: Path) -> tuple[Path, Path]:
    """Copy the template (without build leftovers) and ``pip install --target`` it: (copy, site)."""
    copy, site = root / "vpr-bench-template", root / "site"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
    # with setuptools at hand no package index is needed; else pip fetches it into an isolated build env
    isolation = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site)]
    done = subprocess.run([*pip, str(copy)], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return copy, site


@pytest.fixture(scope="module")
def installed(tmp_path_factory, synthetic_root):
    root = tmp_path_factory.mktemp("plugin-template")
    copy, site = install(TEMPLATE, root)
    out = root / "results"
    out.mkdir()
    # one thread each: the background ablate and the call in the foreground share 2 cores
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    dataset = ["--dataset", f"folder:{synthetic_root}", "--out", str(out)]
    kd_losses = ["--kd-loss", "template-cosine,none"]
    ablate = ["ablate", "--method", "tscm", *dataset, *TINY_TSCM, *BUDGET, *kd_losses]
    log = root / "ablate.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vpr_bench", *ablate], env=env, cwd=out, stdout=sink, stderr=sink
        )
    yield Installed(copy, site, out, env, process, log)
    if process.poll() is None:
        process.kill()
        process.wait()


def registry_lines(listing: str) -> dict[str, str]:
    registries = listing.split("\nplugins:")[0]
    return {line.split()[0]: line for line in registries.splitlines() if line.startswith("  ")}


def test_template_imports_only_the_public_api_from_vpr_bench():
    for path in TEMPLATE.rglob("*.py"):
        allowed = {"vpr_bench.api", "vpr_bench.testing"} if "tests" in path.parts else {"vpr_bench.api"}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "vpr_bench":
                names = {f"vpr_bench.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module or ""}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            ours = {name for name in names if name.split(".")[0] == "vpr_bench"}
            assert ours <= allowed, f"{path.relative_to(TEMPLATE)}: imports {sorted(ours - allowed)}"


def test_list_shows_the_method_and_kd_loss_from_the_plugin(installed):
    done = installed.cli("list")
    assert done.returncode == 0, done.stderr
    lines = registry_lines(done.stdout)
    assert lines["template-gem"].endswith("[plugin:template]")
    assert lines["template-cosine"].endswith("[plugin:template]")
    assert "template (vpr-bench-template 0.1.0, vpr_bench_template.plugin): ok" in done.stdout


def test_eval_untrained_writes_a_record(installed):
    dataset = ["--dataset", "corridor", "--out", str(installed.out)]
    model = ["--descriptor-dim", "32", "--model-option", "p=2.5"]
    done = installed.cli("eval", "--method", "template-gem", *dataset, "--untrained", *TINY_CLI, *model)
    assert done.returncode == 0, done.stderr
    (path,) = installed.out.glob("corridor/template-gem/*/metrics.json")
    record = json.loads(path.read_text())
    assert record["method"] == "template-gem" and record["plugin"] == "plugin:template"
    assert record["cost"]["descriptor_dim"] == 32 and 0 <= record["metrics"]["R@1"] <= 100
    config = json.loads((path.parent / "config.json").read_text())
    assert config["model"]["options"] == {"p": 2.5}


def test_the_templates_own_tests_pass_against_the_installed_plugin(installed):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        env=installed.env,
        cwd=installed.copy,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_ablate_tscm_with_the_plugins_kd_loss_writes_a_table(installed):
    assert installed.ablation.wait(timeout=TIMEOUT_S) == 0, installed.ablation_log.read_text()[-3000:]
    (table,) = installed.out.glob("*/tscm-ablation/*/ablation.csv")
    rows = table.read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["template-cosine", "none"]
    students = [json.loads(p.read_text()) for p in installed.out.glob("*/tscm-student/*/metrics.json")]
    assert sorted(s["distillation"]["kd_loss"] for s in students) == ["none", "template-cosine"]


def test_uninstalled_the_plugin_is_gone_from_list(installed):
    installed.ablation.wait(timeout=TIMEOUT_S)  # it runs from the site removed here
    shutil.rmtree(installed.site)
    done = installed.cli("list")
    assert done.returncode == 0, done.stderr
    assert "template-gem" not in done.stdout and "plugin:template" not in done.stdout
    assert "cross-metric" in registry_lines(done.stdout)  # the other plugins still load
