"""The published figure beside the measured one (``compare --published``).

A run is set beside a figure its method's authors report (``vpr_bench.published.PublishedFigure``) only
when the run evaluated the very file the figure was reported for (``weights: official <file>``) under the
figure's protocol (``protocol.name``). A run under another protocol is never compared: its row says which
protocol the figure needs. A figure quoted by others than the authors is marked †.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vpr_bench.published import PublishedFigure
from vpr_bench.results.store import Record

OFFICIAL = "official "  # how a record names an authors' file: "official <file name>"
NOTE = "published: each figure as its source states it; † quoted by others; Δ = measured − published"


class Marked(float):
    """A published figure that prints with its mark (†: secondhand) and compares as the number."""

    def __new__(cls, value: float, mark: str = ""):
        self = super().__new__(cls, value)
        self.mark = mark
        return self


def official_file(record: Record) -> str | None:
    """The authors' file a run evaluated, or None (trained here, untrained, another file)."""
    weights = str(record.get("weights") or "")
    return weights[len(OFFICIAL) :] if weights.startswith(OFFICIAL) else None


def beside(record: Record, figures: Sequence[PublishedFigure]) -> dict:
    """The record's ``published`` section: the matching figure's R@1/R@5 and its source, or a note on why
    none is set beside it."""
    file = official_file(record)
    if file is None:
        return {"note": "not an official file: nothing published to compare"}
    of_file = [f for f in figures if f.file == file]
    if not of_file:
        return {"note": f"no published figure for {file}"}
    protocol = record.get("protocol.name")
    same = next((f for f in of_file if f.protocol is not None and f.protocol == protocol), None)
    if same is None:
        needed = list(dict.fromkeys(f.protocol for f in of_file if f.protocol))
        elsewhere = list(dict.fromkeys(f.benchmark for f in of_file if not f.protocol))
        if needed:
            return {"note": f"protocol differs: published on {', '.join(needed)}"}
        return {"note": f"protocol differs: published on {', '.join(elsewhere)} (no reader here has it)"}
    mark = "†" if same.secondhand else ""
    return {
        "R@1": Marked(same.recall_at_1, mark),
        "R@5": None if same.recall_at_5 is None else Marked(same.recall_at_5, mark),
        "secondhand": same.secondhand,
        "note": f"{mark} {same.source}".strip(),
    }


def with_published(
    records: Sequence[Record], figures: Mapping[str, Sequence[PublishedFigure]]
) -> list[Record]:
    """``records`` with a ``published`` section where their method has published figures (``figures``:
    method name → its figures)."""
    out = []
    for record in records:
        known = figures.get(str(record.get("method")))
        data = {**record.data, "published": beside(record, known)} if known else record.data
        out.append(Record(record.run_dir, data))
    return out


def difference(record: Record, n: int) -> float | None:
    """Measured − published R@``n``, where both are known."""
    measured, published = record.get(f"metrics.R@{n}"), record.get(f"published.R@{n}")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (measured, published))
    return float(measured) - float(published) if numbers else None


def published_notes(rows: Sequence) -> list[str]:
    """The lines under a ``compare --published`` table: each row's figure source or why it has none (the
    terminal table may drop the ``published`` column to fit), then what † and Δ mean."""
    lines = []
    for row in rows:
        for group, record in row.runs.items():
            if note := record.get("published.note"):
                lines.append(f"published, {record.get('method')} on {group}: {note}")
    return [*lines, NOTE]
