"""Records to table columns: pure functions, no I/O (the sink batches, calls these, then inserts).

:func:`columns_for` turns a batch of one record type into the columns of its table, named as the
table's columns (see ``warehouse/migrations``): ``*_ms`` fields become the ``DateTime64(3, 'UTC')``
columns without the suffix (``ts_ms`` -> ``ts``, ``start_ms`` -> ``start``), kept as epoch-ms integers
(the driver passes them as Arrow timestamps). Non-null integer and float columns come out as numpy
arrays, nullable ones and strings as lists; money stays ``Decimal``. The schema version ``v`` is a
wire concern and is not stored.

>>> from models.records import UsageRecord
>>> usage = UsageRecord(id="u1", account="a", service="s", start_ms=0, end_ms=5)
>>> cols = columns_for("usage_records", [usage])
>>> cols["id"], cols["end"].tolist()
(['u1'], [5])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeAlias

import msgspec
import numpy as np
import pyarrow as pa

from models.records import (
    Alert,
    DeadLetter,
    FaultEvent,
    InterfaceRate,
    RatedUsage,
    TelemetrySample,
    UsageRecord,
)
from models.topics import (
    ALERTS,
    DEAD_LETTERS,
    FAULT_EVENTS,
    INTERFACE_RATES_1M,
    TELEMETRY_SAMPLES,
    USAGE_RATED,
    USAGE_RECORDS,
)
from warehouse.base import BatchError

# What columns_for produces; a subtype of warehouse.base.ColumnValues, so it goes straight to insert_columns.
Column: TypeAlias = list[Any] | np.ndarray | pa.Array


class PipelineMetric(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of a worker's own metric (throughput, lag, dead letters), for ``pipeline_metrics``."""

    ts_ms: int
    worker: str
    stage: str
    metric: str
    value: float
    labels: dict[str, str] = {}


TABLE_FOR_TOPIC: Mapping[str, str] = {
    TELEMETRY_SAMPLES.name: "telemetry_samples",
    FAULT_EVENTS.name: "fault_events",
    INTERFACE_RATES_1M.name: "interface_rates_1m",
    USAGE_RECORDS.name: "usage_records",
    USAGE_RATED.name: "rated_usage",
    ALERTS.name: "alerts",
    DEAD_LETTERS.name: "dead_letters",
}

RECORD_TYPE_FOR_TABLE: Mapping[str, type] = {
    "telemetry_samples": TelemetrySample,
    "fault_events": FaultEvent,
    "interface_rates_1m": InterfaceRate,
    "usage_records": UsageRecord,
    "rated_usage": RatedUsage,
    "alerts": Alert,
    "dead_letters": DeadLetter,
    "pipeline_metrics": PipelineMetric,
}

# Tables filled by refreshable views from interface_rates_1m, never inserted into directly.
ROLLUP_TABLES = ("interface_rates_5m", "interface_rates_1h")
TABLES = (*RECORD_TYPE_FOR_TABLE, *ROLLUP_TABLES)

# quantity is Decimal(38, 9); the rating engine is exact to 9 decimals, anything finer is display noise.
_QUANTITY_QUANTUM = Decimal("1e-9")

# How a field becomes a column: "list" (as is), numpy dtype (non-null numbers), or a converter of the
# whole column (a list, an array or an Arrow array).
Kind = str | Callable[[list[Any]], Any]


_QUANTITY_TYPE = pa.decimal128(38, 9)


def _quantity(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:
        return value.quantize(_QUANTITY_QUANTUM, rounding=ROUND_HALF_EVEN)
    return value


def _quantities(values: list[Any]) -> list[Any] | pa.Array:
    """The quantity column: as an Arrow decimal at once when every value fits 9 decimals (what the
    rating engine writes), else with the finer ones rounded half-even, value by value."""
    try:
        return pa.array(values, type=_QUANTITY_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return [_quantity(v) if isinstance(v, Decimal) else v for v in values]


# table -> [(column, record field, kind)]
_SPECS: dict[str, list[tuple[str, str, Kind]]] = {
    "telemetry_samples": [
        ("id", "id", "list"),
        ("device", "device", "list"),
        ("if_index", "if_index", "uint32"),
        ("ts", "ts_ms", "int64"),
        ("if_name", "if_name", "list"),
        *[
            (name, name, "list")
            for name in (
                "in_octets",
                "out_octets",
                "in_ucast_pkts",
                "out_ucast_pkts",
                "in_nucast_pkts",
                "out_nucast_pkts",
                "in_errors",
                "out_errors",
                "in_discards",
                "out_discards",
                "speed_bps",
                "oper_status",
            )
        ],
        ("counter_bits", "counter_bits", "uint8"),
        ("uptime_ticks", "uptime_ticks", "list"),
        ("source", "source", "list"),
    ],
    "fault_events": [
        ("id", "id", "list"),
        ("device", "device", "list"),
        ("ts", "ts_ms", "int64"),
        ("kind", "kind", "list"),
        ("trap_oid", "trap_oid", "list"),
        ("if_index", "if_index", "list"),
        ("varbinds", "varbinds", "list"),
        ("source", "source", "list"),
    ],
    "interface_rates_1m": [
        ("id", "id", "list"),
        ("device", "device", "list"),
        ("if_index", "if_index", "uint32"),
        ("window_start", "window_start_ms", "int64"),
        ("if_name", "if_name", "list"),
        ("samples", "samples", "uint32"),
        *[
            (name, name, "float64")
            for name in (
                "in_bps_avg",
                "in_bps_max",
                "in_bps_p95",
                "out_bps_avg",
                "out_bps_max",
                "out_bps_p95",
            )
        ],
        ("in_util_pct_avg", "in_util_pct_avg", "list"),
        ("out_util_pct_avg", "out_util_pct_avg", "list"),
        *[(name, name, "uint64") for name in ("in_errors", "out_errors", "in_discards", "out_discards")],
        ("speed_bps", "speed_bps", "list"),
        ("in_pps_avg", "in_pps_avg", "float64"),
        ("out_pps_avg", "out_pps_avg", "float64"),
        ("oper_status_changes", "oper_status_changes", "uint32"),
        ("oper_status", "oper_status", "list"),
        ("revision", "revision", "uint32"),
    ],
    "usage_records": [
        ("id", "id", "list"),
        ("account", "account", "list"),
        ("service", "service", "list"),
        ("start", "start_ms", "int64"),
        ("end", "end_ms", "int64"),
        ("bytes_up", "bytes_up", "uint64"),
        ("bytes_down", "bytes_down", "uint64"),
        ("duration_s", "duration_s", "list"),
        ("destination", "destination", "list"),
        ("event_type", "event_type", "list"),
        ("source", "source", "list"),
    ],
    "rated_usage": [
        ("id", "id", "list"),
        ("account", "account", "list"),
        ("service", "service", "list"),
        ("start", "start_ms", "int64"),
        ("end", "end_ms", "int64"),
        ("quantity", "quantity", _quantities),
        ("unit", "unit", "list"),
        ("amount", "amount", "list"),
        ("currency", "currency", "list"),
        ("plan", "plan", "list"),
        ("plan_version", "plan_version", "uint32"),
        ("rating_version", "rating_version", "uint32"),
        ("rated_at", "rated_at_ms", "int64"),
        ("breakdown", "breakdown", "list"),
    ],
    "alerts": [
        ("id", "id", "list"),
        ("fingerprint", "fingerprint", "list"),
        ("name", "name", "list"),
        ("status", "status", "list"),
        ("severity", "severity", "list"),
        ("device", "device", "list"),
        ("if_index", "if_index", "list"),
        ("summary", "summary", "list"),
        ("starts", "starts_ms", "int64"),
        ("ends", "ends_ms", "list"),
        ("updated", "updated_ms", "int64"),
        ("labels", "labels", "list"),
    ],
    "dead_letters": [
        ("id", "id", "list"),
        ("topic", "topic", "list"),
        ("partition", "partition", "int32"),
        ("offset", "offset", "int64"),
        ("stage", "stage", "list"),
        ("reason", "reason", "list"),
        ("payload", "payload", "list"),
        ("payload_encoding", "payload_encoding", "list"),
        ("ts", "ts_ms", "int64"),
    ],
    "pipeline_metrics": [
        ("ts", "ts_ms", "int64"),
        ("worker", "worker", "list"),
        ("stage", "stage", "list"),
        ("metric", "metric", "list"),
        ("value", "value", "float64"),
        ("labels", "labels", "list"),
    ],
}


def _column(records: Sequence[Any], field: str, kind: Kind) -> Column:
    values = [getattr(r, field) for r in records]
    if kind == "list":
        return values
    if callable(kind):  # a converter of the whole column
        return kind(values)
    # One C-level pass from the list; the driver then hands the buffer to Arrow without copying.
    return np.array(values, dtype=kind)


def columns_for(table: str, records: Sequence[Any]) -> dict[str, Column]:
    """The columns of ``table`` for ``records`` (all of that table's record type), in table order.

    A value its column cannot hold (a negative or over-32-bit version for a ``UInt32``, say) raises
    :class:`BatchError` naming the column, as the engine's refusal would: the sink then isolates the
    record and dead-letters it with that reason instead of failing the whole flush."""
    spec = _SPECS.get(table)
    if spec is None:
        raise ValueError(f"no record type is stored in {table!r}; known: {', '.join(_SPECS)}")
    record_type = RECORD_TYPE_FOR_TABLE[table]
    for record in records:
        if type(record) is not record_type:
            raise TypeError(f"{table} stores {record_type.__name__}, got {type(record).__name__}")
    columns: dict[str, Column] = {}
    for column, field, kind in spec:
        try:
            columns[column] = _column(records, field, kind)
        except (OverflowError, ValueError, TypeError) as exc:
            reason = f"{table}.{column} cannot hold a {field} value: {exc}"
            raise BatchError(reason, table=table, column=column) from None
    return columns


def column_fields(table: str) -> list[tuple[str, str]]:
    """``(column, record field)`` of ``table``, in table order (what :func:`columns_for` fills)."""
    return [(column, field) for column, field, _ in _SPECS[table]]


def column_kinds(table: str) -> list[tuple[str, str, Kind]]:
    """``(column, record field, kind)`` of ``table``, in table order: how :func:`columns_for` converts each
    field ("list": handed on as a list; a numpy dtype name; or a converter of the whole column)."""
    return list(_SPECS[table])


def table_for_topic(topic: str) -> str:
    """The table a topic's records land in; ``KeyError`` names the topic when none does."""
    try:
        return TABLE_FOR_TOPIC[topic]
    except KeyError:
        raise KeyError(f"no table for topic {topic!r}") from None


__all__ = [
    "RECORD_TYPE_FOR_TABLE",
    "ROLLUP_TABLES",
    "TABLES",
    "TABLE_FOR_TOPIC",
    "Column",
    "PipelineMetric",
    "column_kinds",
    "columns_for",
    "table_for_topic",
]
