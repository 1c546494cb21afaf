"""A leaderboard ``Table`` written out: an aligned terminal table that fits a width by dropping the least
important columns (best values marked ``*``), Markdown (best in bold), CSV (plain values), LaTeX (a
booktabs ``tabular``, best in bold) and JSON. The lines under the table (which run each row is, warnings)
follow the terminal table, the Markdown (in italics) and the LaTeX (as ``%`` comments). A value a record
does not have shows as "—" (``null`` in JSON, empty in CSV).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from vpr_bench.errors import ConfigError
from vpr_bench.results.store import Record
from vpr_bench.results.table import Column, MeanStd, Table, build_table

FORMATS = ("table", "markdown", "csv", "latex", "json")


def render(table: Table, fmt: str = "table", width: int | None = 80) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return {"table": _text, "markdown": _markdown, "csv": _csv, "latex": _latex, "json": _json}[fmt](
        table, width
    )


def records_table(records: Sequence[Record], **kwargs) -> str:
    """The terminal table of ``records`` (kwargs as ``build_table``)."""
    return render(build_table(records, **kwargs))


# ---- formats ----------------------------------------------------------------------------------------
def _strings(table: Table, cells, mark: str = "{}") -> list[list[str]]:
    best = table.best()
    out = []
    for i, row in enumerate(table.rows):
        line = []
        for column, dataset in cells:
            text = column.text(table.value(row, column, dataset))
            line.append(mark.format(text) if (i, column.key, dataset) in best else text)
        out.append(line)
    return out


def _text(table: Table, width: int | None) -> str:
    cells = table.cells()
    while True:
        rows = _strings(table, cells, "{}*")
        headers = [c.header for c, _ in cells]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        if len(table.datasets) > 1:  # room for each group's "-- name --" label
            for dataset in table.datasets:
                members = [i for i, (_, d) in enumerate(cells) if d == dataset]
                if members:
                    span = sum(widths[i] for i in members) + 2 * (len(members) - 1)
                    widths[members[-1]] += max(0, len(dataset) + 4 - span)
        total = sum(widths) + 2 * (len(widths) - 1)
        droppable = [p for p in cells if p[0].priority > 0]
        if width is None or total <= width or not droppable:
            break
        worst = max(p[0].priority for p in droppable)
        victim = next(p for p in reversed(cells) if p[0].priority == worst)
        cells = [p for p in cells if p != victim]
    lines = []
    if len(table.datasets) > 1:  # a group line over each dataset's columns
        lines.append(_group_line(cells, widths))
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if len(table.datasets) == 1:
        lines.insert(0, f"dataset: {table.datasets[0]}")
    return "\n".join(lines + table.notes) + "\n"


def _group_line(cells, widths) -> str:
    parts, i = [], 0
    while i < len(cells):
        dataset, span = cells[i][1], widths[i]
        j = i + 1
        while dataset and j < len(cells) and cells[j][1] == dataset:
            span, j = span + 2 + widths[j], j + 1
        parts.append(f" {dataset} ".center(span, "-") if dataset else " " * span)
        i = j
    return "  ".join(parts).rstrip()


def _markdown(table: Table, width: int | None) -> str:
    cells = table.cells()
    headers = [table.header(c, d) for c, d in cells]
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if c.better else "---" for c, _ in cells) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in _strings(table, cells, "**{}**")]
    lines += [""] + [f"*{note}*" for note in table.notes] if table.notes else []
    return "\n".join(lines) + "\n"


def _plain(value):
    if isinstance(value, MeanStd):
        return {"mean": round(float(value), 4), "std": round(value.std, 4), "n": value.n}
    if isinstance(value, float):
        return round(value, 4)
    return value


def _csv(table: Table, width: int | None) -> str:
    cells = table.cells()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([table.key(c, d) for c, d in cells])
    for row in table.rows:
        values = [(c, _plain(table.value(row, c, d))) for c, d in cells]
        writer.writerow(["" if v is None else _csv_cell(c, v) for c, v in values])
    return buffer.getvalue()


def _csv_cell(column: Column, value):
    if isinstance(value, dict):  # a seed mean
        return f"{value['mean']} ± {value['std']} (n={value['n']})"
    if isinstance(value, list):
        return column.text(value)
    return value


def _json(table: Table, width: int | None) -> str:
    cells = table.cells()
    rows = [{table.key(c, d): _plain(table.value(row, c, d)) for c, d in cells} for row in table.rows]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text).replace("—", "--")


def _latex(table: Table, width: int | None) -> str:
    cells = table.cells()
    spec = "".join("r" if c.better or c.key == "dim" else "l" for c, _ in cells)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    if len(table.datasets) > 1:
        group, rules, i = [], [], 0
        while i < len(cells):
            dataset, j = cells[i][1], i + 1
            while dataset and j < len(cells) and cells[j][1] == dataset:
                j += 1
            if dataset:
                group.append(f"\\multicolumn{{{j - i}}}{{c}}{{{latex_escape(dataset)}}}")
                rules.append(f"\\cmidrule(lr){{{i + 1}-{j}}}")
            else:
                group += [""] * (j - i)
            i = j
        lines += [" & ".join(group) + " \\\\", " ".join(rules)]
    lines.append(" & ".join(latex_escape(c.header) for c, _ in cells) + " \\\\")
    lines.append("\\midrule")
    best = table.best()
    for i, row in enumerate(table.rows):
        texts = []
        for column, dataset in cells:
            text = latex_escape(column.text(table.value(row, column, dataset)))
            texts.append(f"\\textbf{{{text}}}" if (i, column.key, dataset) in best else text)
        lines.append(" & ".join(texts) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {note}" for note in table.notes]  # the selection rule and warnings travel with the file
    return "\n".join(lines) + "\n"
