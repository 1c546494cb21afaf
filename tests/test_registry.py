import pytest

from vpr_bench.errors import RegistryError
from vpr_bench.registry import DATASETS, METHODS, Registry, registration_source


def test_register_and_build_by_name():
    reg = Registry("widget")

    @reg.register("square", "squares a number")
    def square(x):
        return x * x

    assert reg.build("square", 3) == 9
    entry = reg.get("square")
    assert (entry.description, entry.source) == ("squares a number", "built-in")


def test_family_names_pass_their_argument():
    reg = Registry("widget")
    reg.register("folder:", "a family")(lambda path, k=0: (path, k))
    assert reg.build("folder:/data/x", k=2) == ("/data/x", 2)
    with pytest.raises(RegistryError, match="needs an argument"):
        reg.build("folder:")


def test_duplicate_names_both_sources():
    reg = Registry("widget")
    reg.register("a", "first")(lambda: 1)
    with registration_source("plugin:other"), pytest.raises(RegistryError) as err:
        reg.register("a", "second")(lambda: 2)
    assert "built-in" in str(err.value) and "plugin:other" in str(err.value)


def test_unknown_name_lists_valid_ones():
    reg = Registry("widget")
    reg.register("alpha", "a")(lambda: 1)
    reg.register("beta:", "b")(lambda p: p)
    with pytest.raises(RegistryError, match=r"unknown widget 'gamma'; valid: alpha, beta:<path>"):
        reg.build("gamma")


def test_remove_source_forgets_only_that_source():
    reg = Registry("widget")
    reg.register("keep", "k")(lambda: 1)
    with registration_source("plugin:x"):
        reg.register("drop", "d")(lambda: 2)
    reg.remove_source("plugin:x")
    assert "keep" in reg and "drop" not in reg


def test_description_must_be_one_line():
    with pytest.raises(RegistryError, match="one-line description"):
        Registry("widget").register("x", "two\nlines")


def test_builtins_are_registered():
    assert {"pitts30k", "pitts250k", "tokyo247", "synthetic", "folder:"} <= {
        e.name for e in DATASETS.entries()
    }
    assert "gem" in METHODS
