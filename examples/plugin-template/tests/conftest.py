"""vpr-bench's own fixtures (tiny models, data built in tmp_path), as every plugin's tests use them."""

from vpr_bench import api
from vpr_bench.testing import isolated_cwd  # noqa: F401  (autouse: each test in its own folder)

api.load_all()  # built-ins, then the installed plugins (this one included): the registries are filled here
