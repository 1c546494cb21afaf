"""vpr-bench-zoo: published VPR models evaluated from their authors' own checkpoint files."""
