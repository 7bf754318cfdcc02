"""Query results as text for people and tools: an aligned table, CSV, or JSON.

Values are printed exactly: ``Decimal`` as its digits (JSON carries it as a string, so no reader
turns money into a float), timestamps in ISO form, NULL as ``NULL`` in the table, empty in CSV and
``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from warehouse.base import QueryResult
from warehouse.values import to_json_value

OutputFormat = Literal["table", "csv", "json"]
FORMATS: tuple[OutputFormat, ...] = ("table", "csv", "json")


def _text(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() == timedelta(0):
            # Warehouse timestamps are UTC; print them the way ClickHouse does.
            value = value.replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="milliseconds" if value.microsecond else "seconds")
    if isinstance(value, (date, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(to_json_value(value), ensure_ascii=False)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def format_table(result: QueryResult) -> str:
    """Columns aligned under their names, numbers right-aligned, with a row count."""
    cells = [[_text(v, "NULL") for v in row] for row in result.rows]
    widths = [len(name) for name in result.columns]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(result.rows) and all(_is_number(row[i]) or row[i] is None for row in result.rows)
        for i in range(len(result.columns))
    ]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(list(result.columns)), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    count = len(result.rows)
    out.append(f"({count} row{'s' if count != 1 else ''})")
    return "\n".join(out) + "\n"


def format_csv(result: QueryResult) -> str:
    """RFC 4180 CSV with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([_text(v, "") for v in row])
    return buffer.getvalue()


def format_json(result: QueryResult) -> str:
    """A JSON array of objects, one per row; decimals as strings, timestamps in ISO 8601."""
    rows = [
        {name: to_json_value(value) for name, value in zip(result.columns, row, strict=True)} for row in result.rows
    ]
    return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"


def format_result(result: QueryResult, fmt: OutputFormat = "table") -> str:
    """``result`` as text in ``fmt`` (``table``, ``csv`` or ``json``)."""
    if fmt == "table":
        return format_table(result)
    if fmt == "csv":
        return format_csv(result)
    if fmt == "json":
        return format_json(result)
    raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "OutputFormat", "format_csv", "format_json", "format_result", "format_table"]
