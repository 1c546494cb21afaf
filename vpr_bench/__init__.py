"""vpr-bench: an open benchmark harness for visual place recognition."""

__version__ = "0.1.0"
