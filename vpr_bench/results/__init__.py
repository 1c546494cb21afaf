"""Run records under ``results/<dataset>/<method>/<run-id>/``, and tables of them."""

from vpr_bench.results.store import Record, load_records, new_run_dir, write_record

__all__ = ["Record", "load_records", "new_run_dir", "write_record"]
