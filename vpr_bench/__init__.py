"""vpr-bench: an open benchmark harness for visual place recognition.

Library use: call ``vpr_bench.load_all()`` once before looking anything up in the registries; it
registers the built-in datasets, methods, metrics and losses, then every installed plugin.
"""

__version__ = "0.1.0"


def load_all() -> list:
    """Register the built-ins, then the plugins (entry-point group ``vpr_bench.plugins``), once; the
    plugins' load statuses. Importing a module registers only what that module defines."""
    import vpr_bench.datasets  # noqa: F401  (registration)
    import vpr_bench.evaluation.metrics  # noqa: F401
    import vpr_bench.evaluation.pr  # noqa: F401
    import vpr_bench.losses  # noqa: F401
    import vpr_bench.methods  # noqa: F401
    from vpr_bench.plugins import load_plugins

    return load_plugins()
