"""vpr-bench-template: a vpr-bench plugin to copy (one method, one distillation loss)."""
