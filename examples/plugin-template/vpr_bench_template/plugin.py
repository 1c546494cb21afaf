"""The ``vpr_bench.plugins`` entry point (setup.cfg): importing this module registers what the plugin adds.

Each module registers what it defines; this one only imports them. Everything registered here is shown by
``vpr-bench list`` as ``[plugin:template]``.
"""

from vpr_bench_template import (
    losses,  # noqa: F401  (registers the kd-loss template-cosine)
    model,  # noqa: F401  (registers the method template-gem)
)
