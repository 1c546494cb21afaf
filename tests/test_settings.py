"""Every setting declared once: its field carries the default, help, allowed values and bounds, and the
CLI options, the checks and the coercion of files and --model-option values come from it."""

import dataclasses
import json

import click
import pytest
from click.testing import CliRunner

from vpr_bench.cli._options import _click_option, config_options
from vpr_bench.config import DataConfig, TrainConfig, read_config_file, resolve
from vpr_bench.errors import ConfigError, RegistryError
from vpr_bench.registry import DISTANCES, METHODS, Registry
from vpr_bench.settings import TRAIN, coerce, setting
from vpr_bench.spec import MethodSpec
from vpr_bench.testing import TINY_CLI, run_cli


def test_registering_a_method_with_an_unknown_spec_field_fails_naming_it():
    registry = Registry("method", spec=MethodSpec)
    with pytest.raises(RegistryError, match="method 'mine': unknown registration field 'checkpoint_raeder'"):
        registry.register("mine", "one line", checkpoint_raeder=print)
    registry.register("mine", "one line", descriptor_dim=True)(lambda cfg, options: None)
    assert registry.get("mine").spec.descriptor_dim is True and registry.get("mine").spec.presets == {}
    with pytest.raises(RegistryError, match="takes no fields, got options"):
        Registry("metric").register("m", "one line", options=object)


def test_every_method_has_a_typed_spec():
    assert all(isinstance(entry.spec, MethodSpec) for entry in METHODS.entries())


def test_a_declared_field_becomes_a_cli_option_with_its_choices_and_help():
    @dataclasses.dataclass
    class Section:
        colour: str = setting("red", "The colour.", commands=TRAIN, choices=("red", "blue"))

    (field,) = dataclasses.fields(Section)
    option = _click_option("section.colour", field, str)

    @click.command()
    @option
    def command(section__colour):
        click.echo(section__colour)

    assert CliRunner().invoke(command, ["--colour", "blue"]).output == "blue\n"
    result = CliRunner().invoke(command, ["--colour", "green"])
    assert result.exit_code != 0 and "'green' is not one of 'red', 'blue'" in result.output
    assert "The colour." in CliRunner().invoke(command, ["--help"]).output


def test_the_cli_options_are_the_declared_fields():
    run = config_options("run")(lambda **o: None)
    names = {param.opts[0] for param in run.__click_params__}
    declared_train = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)}
    assert declared_train <= names and "--split" not in names  # --split is eval's
    preprocess = next(p for p in run.__click_params__ if p.opts[0] == "--preprocess")
    (field,) = [f for f in dataclasses.fields(DataConfig) if f.name == "preprocess"]
    assert tuple(preprocess.type.choices) == field.metadata["setting"].choices


def test_registry_backed_choices_follow_the_registry(monkeypatch):
    with pytest.raises(ConfigError, match="--distance 'manhattan' is not one of cosine, l2, squared-l2"):
        resolve("demo", {"train.distance": "manhattan"})
    monkeypatch.setitem(DISTANCES._entries, "manhattan", DISTANCES.get("l2"))
    assert resolve("demo", {"train.distance": "manhattan"}).train.distance == "manhattan"


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        ("3", int, 3),
        ("1e-3", float, 1e-3),
        ("true", bool, True),
        ("none", int | None, None),
        ([1, 5], tuple[int, ...], (1, 5)),
        (2.0, int, 2),
    ],
)
def test_one_coercion_for_flags_files_and_options(value, hint, expected):
    assert coerce(value, hint) == expected


@pytest.mark.parametrize("value, hint", [(True, int), (1, bool), ("ten", int), ([1, 2, 3], tuple[int, int])])
def test_coercion_refuses_what_is_not_the_type(value, hint):
    with pytest.raises(ValueError):
        coerce(value, hint)


@pytest.mark.parametrize(
    "size, message",
    [
        ("0x0", "--image-size 0x0: each side must be between 8 and 4096 pixels"),
        ("10000x10000", "--image-size 10000x10000: each side must be between 8 and 4096 pixels"),
    ],
)
def test_an_image_size_out_of_range_fails_before_any_work(size, message, synthetic_root, tmp_path, capsys):
    args = ["eval", "--method", "gem", "--dataset", f"folder:{synthetic_root}", *TINY_CLI]
    code, _, err = run_cli([*args, "--image-size", size, "--out", str(tmp_path)], capsys)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_native_still_means_each_images_own_size():
    from vpr_bench.config import NATIVE, parse_image_size

    assert parse_image_size("native") == NATIVE and parse_image_size("48x64") == (48, 64)


def test_a_record_given_as_config_says_what_to_pass(tmp_path):
    record = tmp_path / "metrics.json"
    record.write_text(json.dumps({"schema_version": 3, "metrics": {"R@1": 1.0}}))
    with pytest.raises(ConfigError, match="this is a result record, not a configuration; pass the run's"):
        read_config_file(record)


def test_method_flags_are_model_options_only(capsys):
    code, _, err = run_cli(["eval", "--method", "gem", "--dataset", "synthetic", "--clusters", "32"], capsys)
    assert code != 0 and "No such option '--clusters'" in err
    code, _, err = run_cli(
        ["eval", "--method", "gem", "--dataset", "synthetic", "--model-option", "clusters=32"], capsys
    )
    assert code != 0 and "'clusters' is not an option of gem; valid: p" in err


def test_a_declared_bound_on_a_method_option_is_checked():
    from vpr_bench.options import option, parse

    @dataclasses.dataclass(frozen=True)
    class Options:
        clusters: int = option(64, "Clusters.", minimum=1)

    with pytest.raises(ConfigError, match="mine: --model-option clusters must be ≥ 1"):
        parse(Options, {"clusters": "0"}, "mine")


def test_ablate_checks_each_kd_loss_before_any_work(tmp_path, capsys):
    args = ["ablate", "--method", "tscm", "--dataset", "synthetic", "--out", str(tmp_path)]
    code, _, err = run_cli([*args, "--kd-loss", "cross-metric,kl"], capsys)
    assert code != 0 and "--kd-loss 'kl' is not one of" in err and "cross-metric" in err
    assert not list(tmp_path.iterdir())
