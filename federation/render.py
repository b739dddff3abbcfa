"""Render result tables as text, CSV or JSON (for the CLI and ``print(result)``)."""

from __future__ import annotations

import csv
import io
import json
import math

from federation.table import Cell, ColumnKind, ResultTable

__all__ = ["format_cell", "render_csv", "render_json", "render_table"]


def format_cell(value: Cell, kind: ColumnKind) -> str:
    """A cell as display text: NULL for None, 12 significant digits for doubles."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.12g}"
    return str(value)


def render_table(table: ResultTable) -> str:
    """An aligned plain-text table."""
    header = list(table.columns)
    body = [
        [format_cell(v, k) for v, k in zip(row, table.kinds, strict=True)] for row in table.rows
    ]
    widths = [len(h) for h in header]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    right = [k is not ColumnKind.GROUP for k in table.kinds]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in body)
    if not table.rows:
        out.append("(no rows)")
    return "\n".join(out)


def render_csv(table: ResultTable) -> str:
    """CSV with a header row; NULL as an empty field; doubles at full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def render_json(table: ResultTable, **meta: object) -> str:
    """A JSON object: ``meta`` fields, ``columns`` and ``rows`` (NULL as null)."""
    return json.dumps(
        {**meta, "columns": list(table.columns), "rows": [list(r) for r in table.rows]},
        indent=2,
    )
