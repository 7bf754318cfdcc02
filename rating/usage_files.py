"""Usage and rated-usage files for offline rating: CSV or JSON Lines in, CSV or JSON Lines out.

Input columns (CSV header, or JSON keys): ``id, account, service, start, end, bytes_up,
bytes_down, duration_s, destination, event_type``. ``start``/``end`` are ISO-8601 (``Z`` or an
offset; no offset means UTC) or epoch milliseconds; ``start_ms``/``end_ms`` are accepted too.
Empty numbers default to 0 (``duration_s`` to unknown). Every bad line is reported with its line
number and reason; it never stops the run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from collectors.usage import COLUMNS as USAGE_FILE_COLUMNS
from collectors.usage import UsageLimits, usage_record
from models.records import RatedUsage, UsageRecord

USAGE_COLUMNS = USAGE_FILE_COLUMNS
RATED_COLUMNS = (
    "id",
    "account",
    "service",
    "start_ms",
    "end_ms",
    "bytes_up",
    "bytes_down",
    "duration_s",
    "destination",
    "event_type",
    "plan",
    "plan_version",
    "rating_version",
    "quantity",
    "unit",
    "amount",
    "currency",
    "rated_at_ms",
    "breakdown",
)


class BadLine(ValueError):
    """A line that is not a usage record; ``line`` is 1-based (the CSV header is line 1)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass
class UsageFile:
    """Records read from a file with their line numbers, and the lines that were refused."""

    records: list[UsageRecord] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    previous: list[RatedUsage | None] = field(default_factory=list)  # rated columns, when the file has them


# Offline rating reads historical files, so no plausibility window on timestamps (the collector has one).
_NO_TIME_WINDOW = UsageLimits(max_age_days=0, max_future_s=1e12)


def record_from_fields(fields: dict[str, Any]) -> UsageRecord:
    """One input row to a validated :class:`UsageRecord` (raises ``ValueError`` with the reason).

    The same row rules as the usage-file collector (``collectors.usage.usage_record``), plus what files
    written by ``ossbss rate`` need: ``start_ms``/``end_ms`` columns, and ``end`` defaulting to ``start``.
    """
    row = dict(fields)
    for column in ("start", "end"):
        if row.get(column) in (None, ""):
            row[column] = row.get(f"{column}_ms")
    if row.get("end") in (None, ""):
        row["end"] = row.get("start")
    return usage_record(row, source="", limits=_NO_TIME_WINDOW)


def _previous_from_fields(fields: dict[str, Any], record: UsageRecord) -> RatedUsage | None:
    """The rated columns of a row written by ``ossbss rate``, or None if the file has none."""
    if not fields.get("amount") or not fields.get("plan"):
        return None
    try:
        return RatedUsage(
            id=record.id,
            account=record.account,
            service=record.service,
            start_ms=record.start_ms,
            end_ms=record.end_ms,
            quantity=Decimal(str(fields.get("quantity") or "0")),
            unit=str(fields.get("unit") or ""),
            amount=Decimal(str(fields["amount"])),
            currency=str(fields.get("currency") or ""),
            plan=str(fields["plan"]),
            plan_version=int(fields.get("plan_version") or 1),
            rating_version=int(fields.get("rating_version") or 1),
            rated_at_ms=int(fields.get("rated_at_ms") or 0),
            breakdown=str(fields.get("breakdown") or ""),
        )
    except (InvalidOperation, ValueError):
        raise ValueError("rated columns (amount, quantity, versions) are malformed") from None


def _rows(path: Path, stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, fields) per data line, or (line number, reason) when the line cannot be read."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, f"invalid JSON: {exc.msg}"
                continue
            yield number, value if isinstance(value, dict) else "a JSON line must be an object"
        return
    reader = csv.DictReader(stream)
    if reader.fieldnames is None:
        return
    missing = {"id", "account"} - set(reader.fieldnames)
    if missing:
        yield 1, f"CSV header lacks {sorted(missing)} (expected {', '.join(USAGE_COLUMNS)})"
        return
    for row in reader:
        if None in row:
            yield reader.line_num, f"more values than the {len(reader.fieldnames)} header columns"
            continue
        yield reader.line_num, row


def read_usage(path: str | Path, *, with_previous: bool = False) -> UsageFile:
    """Read a usage file (or a rated file from ``ossbss rate`` when ``with_previous``)."""
    source = Path(path)
    result = UsageFile()
    with source.open(newline="", encoding="utf-8") as stream:
        for number, fields in _rows(source, stream):
            if isinstance(fields, str):
                result.bad.append(BadLine(number, fields))
                continue
            try:
                record = record_from_fields(fields)
                previous = _previous_from_fields(fields, record) if with_previous else None
            except ValueError as exc:
                result.bad.append(BadLine(number, str(exc)))
                continue
            result.records.append(record)
            result.lines.append(number)
            result.previous.append(previous)
    return result


def rated_row(record: UsageRecord, rated: RatedUsage) -> dict[str, Any]:
    return {
        "id": rated.id,
        "account": rated.account,
        "service": rated.service,
        "start_ms": rated.start_ms,
        "end_ms": rated.end_ms,
        "bytes_up": record.bytes_up,
        "bytes_down": record.bytes_down,
        "duration_s": "" if record.duration_s is None else record.duration_s,
        "destination": record.destination,
        "event_type": record.event_type,
        "plan": rated.plan,
        "plan_version": rated.plan_version,
        "rating_version": rated.rating_version,
        "quantity": str(rated.quantity),
        "unit": rated.unit,
        "amount": str(rated.amount),
        "currency": rated.currency,
        "rated_at_ms": rated.rated_at_ms,
        "breakdown": rated.breakdown,
    }


def write_rated(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rated rows as CSV (or JSON Lines for ``.jsonl``); amounts stay decimal strings."""
    target = Path(path)
    if target.suffix.lower() in (".jsonl", ".ndjson"):
        target.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RATED_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target.write_text(buffer.getvalue(), encoding="utf-8")


__all__ = [
    "RATED_COLUMNS",
    "USAGE_COLUMNS",
    "BadLine",
    "UsageFile",
    "rated_row",
    "read_usage",
    "record_from_fields",
    "write_rated",
]
