"""Every method's options are typed: an unknown or ill-typed one, or a --descriptor-dim the method cannot
honour, fails in one line naming the valid options — before any work."""

import pytest

from tests.conftest import tiny_config
from vpr_bench.errors import ConfigError
from vpr_bench.methods import build_method
from vpr_bench.testing import TINY_CLI, run_cli


def test_the_netvlad_example_fails_naming_the_typo_and_the_valid_options(capsys):
    code, out, err = run_cli(
        [
            "run",
            "--method",
            "netvlad",
            "--dataset",
            "synthetic",
            "--descriptor-dim",
            "128",
            "--model-option",
            "clsuters=8",
            *TINY_CLI,
        ],
        capsys,
    )
    assert code != 0 and not out
    assert err.strip() == (
        "error: --model-option 'clsuters' is not an option of netvlad; valid: clusters, pca_dim, sharpness"
    )


def test_an_option_of_the_wrong_type_fails():
    cfg = tiny_config(**{"model.method": "netvlad", "model.options": {"clusters": "many"}})
    with pytest.raises(ConfigError, match=r"clusters='many': netvlad expects int"):
        build_method(cfg.model)


@pytest.mark.parametrize(
    ("method", "options", "valid"),
    [
        ("gem", {"clusters": 4}, "valid: p"),
        ("netvlad", {"p": 3}, "valid: clusters, pca_dim, sharpness"),
    ],
)
def test_unknown_options_fail_for_each_builtin(method, options, valid):
    cfg = tiny_config(**{"model.method": method, "model.options": options})
    with pytest.raises(ConfigError, match=valid):
        build_method(cfg.model)


def test_descriptor_dim_is_honoured_by_gem():
    model = build_method(tiny_config(**{"model.method": "gem", "model.descriptor_dim": 24}).model)
    assert model.descriptor_dim == 24


def test_descriptor_dim_is_refused_by_netvlad_pointing_to_pca_dim(capsys):
    code, _, err = run_cli(
        ["run", "--method", "netvlad", "--dataset", "synthetic", "--descriptor-dim", "128", *TINY_CLI], capsys
    )
    assert code != 0 and "netvlad cannot set its descriptor size" in err and "pca_dim" in err


def test_gem_option_p_is_used():
    model = build_method(tiny_config(**{"model.method": "gem", "model.options": {"p": 5}}).model)
    assert model.pool.p.item() == 5.0


def test_list_shows_a_methods_options_with_defaults(capsys):
    code, out, _ = run_cli(["list", "--method", "netvlad"], capsys)
    assert code == 0
    assert "clusters=64" in out and "pca_dim=None" in out and "sharpness=100.0" in out
    assert "--descriptor-dim: refused" in out
