"""Usage and rated-usage files for offline rating: CSV or JSON Lines in, CSV or JSON Lines out.

Input columns (CSV header, or JSON keys): ``id, account, service, start, end, bytes_up,
bytes_down, duration_s, destination, event_type``. ``start``/``end`` are ISO-8601 (``Z`` or an
offset; no offset means UTC) or epoch milliseconds; ``start_ms``/``end_ms`` are accepted too.
Empty numbers default to 0 (``duration_s`` to unknown). Every bad line is reported with its line
number and reason; it never stops the run.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import msgspec

from models.records import RatedUsage, UsageRecord

USAGE_COLUMNS = (
    "id",
    "account",
    "service",
    "start",
    "end",
    "bytes_up",
    "bytes_down",
    "duration_s",
    "destination",
    "event_type",
)
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


def parse_instant(value: Any, name: str) -> int:
    """ISO-8601 or epoch milliseconds to epoch milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text:
        raise ValueError(f"{name}: missing")
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not an ISO-8601 time or epoch ms: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _integer(value: Any, name: str, default: int | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool | float):
        raise ValueError(f"{name}: expected a whole number, not {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: expected a whole number, not {value!r}") from None


def record_from_fields(fields: dict[str, Any]) -> UsageRecord:
    """One input row to a validated :class:`UsageRecord` (raises ``ValueError`` with the reason)."""
    start = fields.get("start", fields.get("start_ms"))
    end = fields.get("end", fields.get("end_ms"))
    if start is None or (isinstance(start, str) and not start.strip()):
        raise ValueError("start: missing")
    start_ms = parse_instant(start, "start")
    end_ms = parse_instant(end, "end") if end not in (None, "") else start_ms
    document = {
        "id": str(fields.get("id") or ""),
        "account": str(fields.get("account") or ""),
        "service": str(fields.get("service") or ""),
        "start_ms": start_ms,
        "end_ms": end_ms,
        "bytes_up": _integer(fields.get("bytes_up"), "bytes_up", 0),
        "bytes_down": _integer(fields.get("bytes_down"), "bytes_down", 0),
        "duration_s": _integer(fields.get("duration_s"), "duration_s", None),
        "destination": str(fields.get("destination") or ""),
        "event_type": str(fields.get("event_type") or "data"),
    }
    try:
        return msgspec.convert(document, UsageRecord)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc).replace("$.", "")) from None


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
    "parse_instant",
    "rated_row",
    "read_usage",
    "record_from_fields",
    "write_rated",
]
