"""Rendering rows of run records as a table."""

from __future__ import annotations

from collections.abc import Sequence

from vpr_bench.results.store import Record

MISSING = "—"
COLUMNS = (  # header, record field, format
    ("dataset", "dataset", "{}"),
    ("method", "method", "{}"),
    ("weights", "trained", "{}"),
    ("backbone", "backbone", "{}"),
    ("preset", "preset", "{}"),
    ("R@1", "metrics.R@1", "{:.1f}"),
    ("R@5", "metrics.R@5", "{:.1f}"),
    ("R@10", "metrics.R@10", "{:.1f}"),
    ("R@20", "metrics.R@20", "{:.1f}"),
    ("dim", "cost.descriptor_dim", "{}"),
    ("params(M)", "cost.params", "{:.1f}"),
    ("ms/img", "cost.ms_per_image", "{:.2f}"),
    ("ms/query", "cost.ms_per_query", "{:.3f}"),
    ("peak MB", "cost.peak_rss_mb", "{:.0f}"),
    ("run", "run_id", "{}"),
)


def cell(record: Record, field: str, fmt: str) -> str:
    value = record.get(field)
    if value is None:
        return MISSING
    if field == "cost.params":
        value = value / 1e6
    if field == "trained":
        value = "trained" if value else "untrained"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def render_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def records_table(records: Sequence[Record]) -> str:
    ordered = sorted(records, key=lambda r: (str(r.get("dataset")), -(r.get("metrics.R@1") or -1.0)))
    rows = [[cell(r, field, fmt) for _, field, fmt in COLUMNS] for r in ordered]
    return render_text([h for h, _, _ in COLUMNS], rows)
