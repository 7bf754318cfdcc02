"""Wire bytes straight to table columns for the sink's hottest topics, with no record objects and no ``Decimal``.

The object path (``RecordCodec.decode_batch`` -> ``rows.columns_for`` -> ``columnar.to_arrow_table``) builds
one ``RatedUsage`` per row with two ``Decimal`` objects in it, reads every field back out of it, and turns
the ``Decimal`` objects into Arrow ``decimal128`` one by one. Here a whole batch of message values is decoded
by msgspec into slim structs (same fields, same constraints, but money kept as the JSON string it arrived
as), the fields are gathered into columns, and each money column goes from strings to ``decimal128`` in one
Arrow cast (C++). Measured on 50k rated rows (1000 per message, 2 shared and busy cores), bytes to Arrow
table: 153 against 213 ms, 226 against 280 ms; usage records 56-61 against 77-100 ms. What is left is
mostly msgspec parsing the strings (the escaped ``breakdown`` above all), then the engine's insert. End
to end (``usage_rating_e2e``, 1M records, where the sink writes two rows per record and is the critical
path): 55.5k and 55.0k records/s with it, 48.1-51.2k in four runs without it.

Exactness. A money string takes the cast only when it is plain decimal notation that fits its column
without rounding (:func:`_decimal_shape`: at most ``S`` decimals and ``P - S`` integer digits, checked by a
regular expression over the whole column before the cast); the cast itself is a parse of the digits into a
scaled integer, never a float. Any other spelling (an exponent, a JSON number, ``NaN``, more decimals than
the column keeps) makes :meth:`FastColumns.decode` return ``None``.

Telemetry samples (``telemetry.samples`` -> ``telemetry_samples``, one JSON array per device poll) carry
no money; there the fast path saves ``TelemetrySample.__post_init__`` per row (its bound, every counter
<= 2**64 - 1, is made instead by each counter column's conversion to Arrow ``uint64``, which fails on a
larger value) and most of the gathering: one comprehension per field naming the attribute took 3.4 ms
for the 20 fields of 9600 rows, against 8.6 ms for ``columns_for``'s ``getattr`` loops (6.5 ms with
``msgspec.structs.astuple`` + ``zip``, 8-10 ms with ``operator.attrgetter``). Measured on 200 messages of
48 samples (one simulated poll each; 9600 rows, 3.4 MB), bytes to Arrow table, the two paths alternated
11 times in each of three runs (2 shared and busy cores): min 14.4, 12.6, 13.3 ms against 24.7, 22.5,
23.0 ms; median 18.0, 15.1, 15.3 ms against 30.3, 24.8, 25.6 ms (about 40 % less). Of the fast path's
~15 ms, msgspec's parsing and validation is ~10 ms, the gathering ~3.5 ms and the Arrow conversion ~3.5
ms (work the object path does as well, in ``to_arrow_table``). With the engine's insert (chDB) included,
37-43 ms against 46-51 ms per batch.

Same accepted set as the object path. The slim structs are derived from the record types field by field
(:func:`models.codec.unchecked_struct`), so msgspec applies the same required fields, lengths and ranges;
what the object path checks outside msgspec (schema version, record size limits, ``end_ms >= start_ms``, the 64-bit
counters of a telemetry sample, the integer ranges of the table's columns such as ``if_index`` in a
``UInt32``) is checked here over whole columns. Whenever anything in a batch is not plainly acceptable,
the answer is ``None`` and the sink takes its object path for that batch, so bad input is dead-lettered
(or skipped) exactly as before, with the same reasons.

Alternatives tried on the same 50k rated rows: pyarrow's JSON reader (after splitting the arrays into
lines) took ~130 ms for parsing alone, slower than msgspec, with every msgspec constraint still to be
re-implemented on columns; ClickHouse's own ``JSONEachRow`` parser through ``input()`` was not pursued: a
first try took 130-220 ms and stored no rows, the constraints would move into SQL, and its text-to-Decimal
conversion would have to be proven to refuse (not round) extra decimals. msgspec stays the validator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.codec import MAX_BATCH_MESSAGE_BYTES, MAX_RECORD_BYTES, elements_fit, unchecked_struct
from models.records import SCHEMA_VERSION, InterfaceRate, RatedUsage, Record, TelemetrySample, UsageRecord
from warehouse.rows import Column, column_fields, column_kinds

_UINT32_MAX = 2**32 - 1


def _decimal_shape(precision: int, scale: int) -> str:
    """Plain decimal notation that fits ``Decimal(precision, scale)`` exactly (no rounding, no overflow)."""
    whole = precision - scale
    return rf"^-?[0-9]{{1,{whole}}}(\.[0-9]{{1,{scale}}})?$" if scale else rf"^-?[0-9]{{1,{whole}}}$"


def _decimal_column(values: list[str], precision: int, scale: int) -> pa.Array | None:
    """Decimal strings to ``decimal128(precision, scale)`` in one cast, or None when one of them is not
    plain notation within the column's digits (the object path then decides, as it always did)."""
    text = pa.array(values, type=pa.string())
    fits = pc.match_substring_regex(text, _decimal_shape(precision, scale))
    if not pc.all(fits).as_py():
        return None
    # The shape check leaves nothing to round: this is digits -> scaled integer, exact (and should the cast
    # still refuse a value, the object path decides).
    try:
        return pc.cast(text, pa.decimal128(precision, scale))
    except pa.ArrowInvalid:
        return None


def _int_column(rows: Sequence[Any], name: str, low: int, high: int, dtype: str) -> np.ndarray | None:
    """Integer field ``name`` of every row as a numpy column when all lie in [low, high]; None otherwise.
    Read straight into the array (``np.fromiter``): no list in between, about a third less time a value."""
    try:
        array = np.fromiter(map(attrgetter(name), rows), np.int64, len(rows))
    except OverflowError:  # beyond int64: certainly outside every range used here
        return None
    if len(array) and (int(array.min()) < low or int(array.max()) > high):
        return None
    return array if dtype == "int64" else array.astype(dtype)


class FastColumns:
    """Decodes message values of one topic straight into the columns of its table.

    ``build`` gets the decoded slim structs and returns the columns (named and typed as
    :func:`warehouse.rows.columns_for` names and types them) or None to refuse the batch.
    """

    def __init__(
        self,
        table: str,
        record_type: type[Record],
        build: Callable[[list[Any]], dict[str, Column] | None],
        max_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.table = table
        self.record_type = record_type
        self.wire_type = unchecked_struct(record_type)
        self.max_bytes = max_bytes
        self._build = build
        self._one = msgspec.json.Decoder(self.wire_type)
        self._many = msgspec.json.Decoder(list[self.wire_type])  # type: ignore[name-defined]

    def decode(self, values: Sequence[bytes | None]) -> tuple[dict[str, Column], list[int]] | None:
        """The columns of every record in ``values`` and, per row, the index of its message; None when any
        message is not plainly valid (then nothing of the batch is taken, the caller takes its object path)."""
        rows: list[Any] = []
        origin: list[int] = []
        try:
            for index, value in enumerate(values):
                if value is None:
                    return None
                if value[:1] == b"[":  # a batched message, as RecordCodec.decode_message tells them apart
                    if len(value) > MAX_BATCH_MESSAGE_BYTES:
                        return None
                    # Every element within the record limit, as the object path requires.
                    if not elements_fit(value, self.max_bytes):
                        return None
                    got = self._many.decode(value)
                    rows.extend(got)
                    origin.extend([index] * len(got))
                else:
                    if len(value) > self.max_bytes:
                        return None
                    rows.append(self._one.decode(value))
                    origin.append(index)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if not rows:
            return None
        versions = _int_column(rows, "v", -(2**63), SCHEMA_VERSION, "int64")
        if versions is None:
            return None
        columns = self._build(rows)
        if columns is None:
            return None
        return columns, origin


def _table_columns(table: str, rows: list[Any], converted: Mapping[str, Column]) -> dict[str, Column]:
    """Every column of ``table`` in table order (``rows.column_fields``): those in ``converted`` as given,
    the others as the plain list of their field, as ``rows.columns_for`` hands them on."""
    return {
        column: converted[column] if column in converted else [getattr(r, field) for r in rows]
        for column, field in column_fields(table)
    }


def _usage_keys(rows: list[Any]) -> dict[str, Column]:
    """The id, account and service columns that usage records and rated usage share.

    Text columns are gathered by comprehensions naming the attribute (see :func:`_telemetry_samples`):
    40k rows of usage_records' seven took 125-141 ns a row against 255-286 through getattr."""
    return {
        "id": [r.id for r in rows],
        "account": [r.account for r in rows],
        "service": [r.service for r in rows],
    }


def _rated_usage(rows: list[Any]) -> dict[str, Column] | None:
    """``rated_usage`` columns; money as exact ``decimal128``, numbers checked against their column types."""
    times = [
        _int_column(rows, "start_ms", 0, 2**63 - 1, "int64"),
        _int_column(rows, "end_ms", 0, 2**63 - 1, "int64"),
        _int_column(rows, "rated_at_ms", 0, 2**63 - 1, "int64"),
    ]
    versions = [
        _int_column(rows, "plan_version", 0, _UINT32_MAX, "uint32"),
        _int_column(rows, "rating_version", 0, _UINT32_MAX, "uint32"),
    ]
    # quantity: the object path rounds finer values half-even to 9 decimals; such a batch is refused here
    # and rounded there. amount: more than 6 decimals is refused by the engine there (a dead letter).
    quantity = _decimal_column([r.quantity for r in rows], 38, 9)
    amount = _decimal_column([r.amount for r in rows], 18, 6)
    if quantity is None or amount is None or any(c is None for c in (*times, *versions)):
        return None
    start, end, rated_at = times
    plan_version, rating_version = versions
    converted: dict[str, Column] = {"start": start, "end": end, "quantity": quantity, "amount": amount}
    converted |= {"plan_version": plan_version, "rating_version": rating_version, "rated_at": rated_at}
    converted |= _usage_keys(rows) | {
        "unit": [r.unit for r in rows],
        "currency": [r.currency for r in rows],
        "plan": [r.plan for r in rows],
        "breakdown": [r.breakdown for r in rows],
    }
    return _table_columns("rated_usage", rows, converted)


def _usage_records(rows: list[Any]) -> dict[str, Column] | None:
    """``usage_records`` columns, numbers checked against their column types and ``UsageRecord.__post_init__``."""
    start = _int_column(rows, "start_ms", 0, 2**63 - 1, "int64")
    end = _int_column(rows, "end_ms", 0, 2**63 - 1, "int64")
    bytes_up = _int_column(rows, "bytes_up", 0, 2**63 - 1, "uint64")
    bytes_down = _int_column(rows, "bytes_down", 0, 2**63 - 1, "uint64")
    if start is None or end is None or bytes_up is None or bytes_down is None or bool(np.any(end < start)):
        return None  # "end_ms is before start_ms" is the object path's reason to give
    converted: dict[str, Column] = {"start": start, "end": end, "bytes_up": bytes_up, "bytes_down": bytes_down}
    converted |= _usage_keys(rows) | {
        "duration_s": [r.duration_s for r in rows],
        "destination": [r.destination for r in rows],
        "event_type": [r.event_type for r in rows],
        "source": [r.source for r in rows],
    }
    return _table_columns("usage_records", rows, converted)


def _nullable_column(rows: Sequence[Any], name: str, kind: pa.DataType) -> pa.Array | None:
    """Integer field ``name`` (or None) of every row as an Arrow array of ``kind`` (None stays null), or None
    when a value does not fit. Without a None the values go straight into a numpy array, which Arrow takes
    as it is: about 55 ns a value, against 110 for a list and then ``pa.array`` of it."""
    get = attrgetter(name)
    try:
        return pa.array(np.fromiter(map(get, rows), kind.to_pandas_dtype(), len(rows)))
    except OverflowError:
        return None
    except TypeError:  # a None
        values = list(map(get, rows))
    if values[0] is None and values.count(None) == len(values):  # a field these devices do not report
        return pa.nulls(len(values), kind)
    try:
        return pa.array(values, type=kind)
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None


_UINT64 = pa.uint64()

# The numbers a usual sample has all of (the non-unicast packet counters are often absent), in one pass.
_SAMPLE_NUMBERS = (
    "if_index",
    "ts_ms",
    "counter_bits",
    "oper_status",
    "in_octets",
    "out_octets",
    "in_ucast_pkts",
    "out_ucast_pkts",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
    "speed_bps",
    "uptime_ticks",
)
_sample_numbers_of = attrgetter(*_SAMPLE_NUMBERS)


def _sample_numbers(rows: list[Any]) -> dict[str, Column | None]:
    """The integer columns of ``telemetry_samples`` (None for one whose values do not fit it). When no
    row has a None among :data:`_SAMPLE_NUMBERS` and all fit 64 bits, those are read in one pass, each
    row's together (as the stream worker reads its counters: 35 against 55 ns a value field by field)."""
    n = len(rows)
    try:
        block = np.fromiter(chain.from_iterable(map(_sample_numbers_of, rows)), np.uint64, n * len(_SAMPLE_NUMBERS))
    except (TypeError, OverflowError):  # a None (or a number past 64 bits): field by field
        return {
            "if_index": _int_column(rows, "if_index", 0, _UINT32_MAX, "uint32"),
            "ts": _int_column(rows, "ts_ms", 0, 2**63 - 1, "int64"),
            "counter_bits": _int_column(rows, "counter_bits", 0, 255, "uint8"),  # 32 or 64 (msgspec)
            "oper_status": _nullable_column(rows, "oper_status", pa.uint8()),  # 1..7 or None (msgspec)
            **{name: _nullable_column(rows, name, _UINT64) for name in _SAMPLE_NUMBERS[4:]},
            **{name: _nullable_column(rows, name, _UINT64) for name in ("in_nucast_pkts", "out_nucast_pkts")},
        }
    columns = np.ascontiguousarray(block.reshape(n, len(_SAMPLE_NUMBERS)).T)
    top = columns[:4].max(axis=1, initial=0).tolist()
    if_index, ts, bits, oper = columns[:4]
    return {
        "if_index": if_index.astype(np.uint32) if top[0] <= _UINT32_MAX else None,
        "ts": ts.astype(np.int64) if top[1] <= 2**63 - 1 else None,
        "counter_bits": bits.astype(np.uint8) if top[2] <= 255 else None,
        "oper_status": pa.array(oper.astype(np.uint8)) if top[3] <= 255 else None,
        **{name: pa.array(values) for name, values in zip(_SAMPLE_NUMBERS[4:], columns[4:], strict=True)},
        **{name: _nullable_column(rows, name, _UINT64) for name in ("in_nucast_pkts", "out_nucast_pkts")},
    }


def _telemetry_samples(rows: list[Any]) -> dict[str, Column] | None:
    """``telemetry_samples`` columns. Each nullable counter goes to Arrow here: a value over 2**64 - 1 fails
    that conversion, which makes ``TelemetrySample.__post_init__``'s check over whole columns (and bounds
    ``speed_bps`` and ``uptime_ticks`` as their column does); ``if_index`` is checked against ``UInt32``.

    Text fields are gathered by one comprehension each, the attribute named in the code: the cheapest way
    measured to build a list (9600 rows, 20 fields: 3.4 ms, against 6.5 for ``astuple`` + ``zip`` and 8-10
    for ``getattr`` or ``attrgetter``). Numbers need no list (:func:`_sample_numbers`)."""
    converted: dict[str, Column | None] = {
        "id": [r.id for r in rows],
        "device": [r.device for r in rows],
        "if_name": [r.if_name for r in rows],
        "source": [r.source for r in rows],
        **_sample_numbers(rows),
    }
    ready = {column: values for column, values in converted.items() if values is not None}
    if len(ready) < len(converted):
        return None  # the object path refuses that record, or dead-letters it naming the column
    return _table_columns("telemetry_samples", rows, ready)


# An interface window's numbers (``interface_rates_1m``), by the kind columns_for converts them to: the
# integers and the floats each read in one pass, then checked against their columns' bounds.
_INT_BOUNDS = {"uint32": _UINT32_MAX, "int64": 2**63 - 1, "uint64": 2**64 - 1}
_RATE_INTS = [(c, f, k) for c, f, k in column_kinds("interface_rates_1m") if isinstance(k, str) and k in _INT_BOUNDS]
_RATE_FLOATS = [(c, f) for c, f, k in column_kinds("interface_rates_1m") if k == "float64"]
_rate_ints_of = attrgetter(*(field for _, field, _ in _RATE_INTS))
_rate_floats_of = attrgetter(*(field for _, field in _RATE_FLOATS))


def _interface_rates(rows: list[Any]) -> dict[str, Column] | None:
    """``interface_rates_1m`` columns: the integers and the floats each read in one pass, each integer
    column checked against its type's bounds (``UInt32`` and ``Int64`` as the object path's conversions
    check them); the optional ones (utilisation, speed, oper status) as lists, as the object path hands
    them on. The stream worker emits about one window for seven samples; 72k windows, decode + columns:
    2.5-2.8 against 5.3-5.7 us a window by the object path (whose float lists Arrow then converts too)."""
    n = len(rows)
    try:
        ints = np.fromiter(chain.from_iterable(map(_rate_ints_of, rows)), np.uint64, n * len(_RATE_INTS))
        floats = np.fromiter(chain.from_iterable(map(_rate_floats_of, rows)), np.float64, n * len(_RATE_FLOATS))
    except (TypeError, OverflowError):  # a value no column of these holds: the object path says which
        return None
    int_columns = np.ascontiguousarray(ints.reshape(n, len(_RATE_INTS)).T)
    float_columns = np.ascontiguousarray(floats.reshape(n, len(_RATE_FLOATS)).T)
    converted: dict[str, Column] = {"id": [r.id for r in rows], "device": [r.device for r in rows]}
    converted["if_name"] = [r.if_name for r in rows]
    tops = int_columns.max(axis=1, initial=0).tolist()
    for (column, _, kind), values, top in zip(_RATE_INTS, int_columns, tops, strict=True):
        if top > _INT_BOUNDS[str(kind)]:
            return None
        converted[column] = values.astype(str(kind))
    converted.update((column, values) for (column, _), values in zip(_RATE_FLOATS, float_columns, strict=True))
    return _table_columns("interface_rates_1m", rows, converted)


_FAST: dict[type[Record], tuple[str, Callable[[list[Any]], dict[str, Column] | None]]] = {
    RatedUsage: ("rated_usage", _rated_usage),
    UsageRecord: ("usage_records", _usage_records),
    TelemetrySample: ("telemetry_samples", _telemetry_samples),
    InterfaceRate: ("interface_rates_1m", _interface_rates),
}


def fast_columns_for(record_type: type[Record], table: str) -> FastColumns | None:
    """The fast decoder of a (record type, table) route, or None when the route has none."""
    known = _FAST.get(record_type)
    if known is None or known[0] != table:
        return None
    return FastColumns(table, record_type, known[1])


__all__ = ["FastColumns", "fast_columns_for"]
