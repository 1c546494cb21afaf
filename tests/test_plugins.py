"""Plugins are found through the ``vpr_bench.plugins`` entry-point group, like any installed package."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from vpr_bench.plugins import load_plugins
from vpr_bench.registry import ALL_REGISTRIES, DATASETS, METHODS

GOOD = """
from vpr_bench.registry import register_method, register_loss
@register_method("toy", "a toy method from a plugin")
def toy(cfg):
    raise NotImplementedError
@register_loss("toy-loss", "a toy loss")
def toy_loss():
    return None
"""
BROKEN = "import a_module_that_does_not_exist\n"
CLASHING = """
from vpr_bench.registry import register_method
@register_method("clash-extra", "registered before the clash")
def extra(cfg):
    return None
@register_method("gem", "steals a built-in name")
def gem(cfg):
    return None
"""


def install_fake(site, dist, module, source, entry_name):
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[vpr_bench.plugins]\n{entry_name} = {module}\n")


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("goodplug", "brokenplug", "clashplug"):
        sys.modules.pop(name, None)
    for registry in ALL_REGISTRIES:
        for source in ("plugin:good", "plugin:broken", "plugin:clash"):
            registry.remove_source(source)


def test_plugins_are_discovered_and_failures_isolated(fake_site, caplog):
    install_fake(fake_site, "goodplug", "goodplug", GOOD, "good")
    install_fake(fake_site, "brokenplug", "brokenplug", BROKEN, "broken")
    install_fake(fake_site, "clashplug", "clashplug", CLASHING, "clash")
    statuses = {s.name: s for s in load_plugins(reload=True)}
    assert statuses["good"].ok and statuses["good"].distribution == "goodplug 0.1"
    assert "ModuleNotFoundError" in statuses["broken"].error
    assert "registered twice" in statuses["clash"].error and "plugin:clash" in statuses["clash"].error
    assert METHODS.get("toy").source == "plugin:good"
    assert METHODS.get("gem").source == "built-in"  # the clash did not replace the built-in
    assert "clash-extra" not in METHODS  # and the failing plugin left nothing half-registered
    assert "synthetic" in DATASETS
    assert "'broken'" in caplog.text and "failed to load" in caplog.text


def test_real_installed_package_is_listed(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "vpr_toyplugin").mkdir(parents=True)
    (pkg / "vpr_toyplugin" / "__init__.py").write_text(GOOD)
    (pkg / "setup.cfg").write_text(
        textwrap.dedent("""
        [metadata]
        name = vpr-toyplugin
        version = 0.3
        [options]
        packages = vpr_toyplugin
        [options.entry_points]
        vpr_bench.plugins =
            toyplug = vpr_toyplugin
    """)
    )
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(pkg),
        ],
        check=True,
        capture_output=True,
    )
    broken = tmp_path / "broken"
    install_fake(broken, "brokenplug", "brokenplug", BROKEN, "broken")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(broken)])}
    out = subprocess.run([sys.executable, "-m", "vpr_bench", "list"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^  toy +a toy method from a plugin  \[plugin:toyplug\]$", out.stdout, re.MULTILINE)
    assert "toyplug (vpr-toyplugin 0.3, vpr_toyplugin): ok" in out.stdout
    assert "broken (brokenplug 0.1, brokenplug): FAILED: ModuleNotFoundError" in out.stdout
    assert "gem " in out.stdout  # built-ins still there


def test_a_plugin_module_imported_directly_is_still_attributed_to_its_plugin(monkeypatch):
    from importlib import metadata

    from vpr_bench.plugins import GROUP
    from vpr_bench.registry import _source_of_module

    fake = metadata.EntryPoint("acme", "acme_vpr.plugin", "vpr_bench.plugins")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [fake] if group == GROUP else [])
    assert _source_of_module("vpr_bench.methods.gem") == "built-in"
    assert _source_of_module("acme_vpr.losses") == "plugin:acme"  # a module of the plugin's package
    assert _source_of_module("my_notebook_code") == "module:my_notebook_code"
