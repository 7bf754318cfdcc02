"""Query values between JSON and Python, driven by the ClickHouse type of each column.

The embedded driver reads results as ``JSONCompact`` with decimals and wide integers quoted, and the
local SQL endpoint ships rows as JSON too; both decode here, so a ``Decimal(18, 6)`` comes back as
an exact ``Decimal`` and a ``DateTime64(3, 'UTC')`` as an aware ``datetime`` on every path.
The engine prints NaN and infinities as JSON ``null``, so they read back as ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from decimal import Context, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from warehouse.columnar import split_type

Decoder = Callable[[Any], Any]
# Decimal(76, S) has up to 76 digits; the default context (28) would refuse to quantize them.
_WIDE = Context(prec=80)


def _identity(value: Any) -> Any:
    return value


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    return UTC if name == "UTC" else ZoneInfo(name)


def _datetime_decoder(zone: tzinfo | None) -> Decoder:
    def decode(value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        parsed = datetime.fromisoformat(str(value))
        # The engine prints wall time in the column's zone without an offset.
        return parsed.replace(tzinfo=zone) if parsed.tzinfo is None and zone is not None else parsed

    return decode


def _decimal_decoder(scale: int) -> Decoder:
    quantum = Decimal(1).scaleb(-scale)

    def decode(value: Any) -> Any:
        if value is None:
            return None
        # The engine prints 17.000000 as 17; restore the column's scale so amounts read uniformly.
        return Decimal(str(value)).quantize(quantum, context=_WIDE)

    return decode


def _nullable(inner: Decoder) -> Decoder:
    def decode(value: Any) -> Any:
        return None if value is None else inner(value)

    return decode


def decoder_for(ch_type: str) -> Decoder:
    """A function turning one JSON-decoded value of ``ch_type`` into its exact Python value."""
    name, args = split_type(ch_type)
    if name in ("LowCardinality",):
        return decoder_for(args[0])
    if name == "Nullable":
        return _nullable(decoder_for(args[0]))
    if name.startswith("Decimal"):
        return _decimal_decoder(int(args[-1]) if args else 0)
    if name in ("Float32", "Float64"):
        return _nullable(float)
    if name == "Array":
        item = decoder_for(args[0])
        return _identity if item is _identity else _nullable(lambda v: [item(x) for x in v])
    if name == "Map":
        value_decoder = decoder_for(args[1])
        if value_decoder is _identity:
            return _identity
        return _nullable(lambda v: {k: value_decoder(x) for k, x in v.items()})
    if name in ("Int64", "UInt64", "Int128", "UInt128", "Int256", "UInt256"):
        return _nullable(int)
    if name == "DateTime64":
        return _datetime_decoder(_zone(args[1].strip("'") if len(args) > 1 else None))
    if name == "DateTime":
        return _datetime_decoder(_zone(args[0].strip("'") if args else None))
    if name in ("Date", "Date32"):
        return _nullable(lambda v: v if isinstance(v, date) else date.fromisoformat(str(v)))
    return _identity


def decode_rows(types: list[str], rows: list[list[Any]]) -> list[list[Any]]:
    """Decode every row of a JSONCompact-style result in place and return it."""
    decoders = [decoder_for(t) for t in types]
    active = [(i, d) for i, d in enumerate(decoders) if d is not _identity]
    if active:
        for row in rows:
            for i, decode in active:
                row[i] = decode(row[i])
    return rows


def to_json_value(value: Any) -> Any:
    """A JSON-safe form that :func:`decoder_for` turns back into the same value."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    return value


__all__ = ["Decoder", "decode_rows", "decoder_for", "to_json_value"]
