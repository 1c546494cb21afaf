"""The harness's own fixtures, as any third-party plugin would use them."""

from vpr_bench.api import load_all
from vpr_bench.testing import isolated_cwd  # noqa: F401

load_all()  # the registries are filled at the entry points: for the tests, here
