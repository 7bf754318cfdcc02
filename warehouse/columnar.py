"""Columnar batches to Arrow, typed by the target table's ClickHouse column types.

Both drivers insert Arrow: it carries ``Decimal`` exactly (``decimal128``: scaled integers, never a
float), timestamps as integer ticks and nullable columns natively, and both engines read it without
a per-row parse. Accepted Python values per ClickHouse type:

* ``DateTime64(p, tz)``: integer epoch ticks at precision ``p`` (epoch milliseconds for ``p = 3``),
  numpy integer arrays, or ``datetime``;
* ``Decimal(P, S)``: ``Decimal``, ``int`` or ``str``; a value with more than ``S`` decimal places is
  refused (money is never rounded silently) and so is ``float``;
* ``Map(K, V)``: ``dict``; everything else: the obvious Python or numpy values; ``None`` for NULL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa

from warehouse.base import BatchError, ColumnValues

_INTS: dict[str, pa.DataType] = {
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
}
_TEXT = ("String", "FixedString", "Enum8", "Enum16", "UUID", "IPv4", "IPv6")
_DECIMAL_PRECISION = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38}


def _split_args(inner: str) -> list[str]:
    """Split ``a, Map(b, c), 'x'`` on its top-level commas."""
    args: list[str] = []
    depth, start, quoted = 0, 0, False
    for i, ch in enumerate(inner):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return [a for a in args if a]


def split_type(ch_type: str) -> tuple[str, list[str]]:
    """``Map(String, Decimal(18, 6))`` -> ``("Map", ["String", "Decimal(18, 6)"])``."""
    ch_type = ch_type.strip()
    if "(" not in ch_type:
        return ch_type, []
    name, _, rest = ch_type.partition("(")
    return name.strip(), _split_args(rest[: rest.rfind(")")])


def _time_unit(precision: int) -> str:
    return "s" if precision == 0 else "ms" if precision <= 3 else "us" if precision <= 6 else "ns"


def arrow_type(ch_type: str) -> pa.DataType | None:
    """The Arrow type that carries a ClickHouse column type exactly; ``None`` lets Arrow infer."""
    name, args = split_type(ch_type)
    if name in ("LowCardinality", "Nullable"):
        return arrow_type(args[0])
    if name in _INTS:
        return _INTS[name]
    if name in _TEXT:
        return pa.string()
    if name == "Decimal":
        return pa.decimal128(int(args[0]), int(args[1]) if len(args) > 1 else 0)
    if name in _DECIMAL_PRECISION:
        return pa.decimal128(_DECIMAL_PRECISION[name], int(args[0]))
    if name == "DateTime64":
        tz = args[1].strip("'") if len(args) > 1 else None
        return pa.timestamp(_time_unit(int(args[0])), tz=tz)
    if name == "DateTime":
        return pa.timestamp("s", tz=args[0].strip("'") if args else None)
    if name in ("Date", "Date32"):
        return pa.date32()
    if name == "Map":
        key, value = arrow_type(args[0]), arrow_type(args[1])
        if key is None or value is None:
            return None
        return pa.map_(key, value)
    if name == "Array":
        item = arrow_type(args[0])
        return None if item is None else pa.list_(item)
    return None


def _decimal_values(values: Sequence[Any]) -> list[Decimal | int | None]:
    """Strings to ``Decimal``; ``float`` refused, so no binary rounding ever reaches money."""
    out: list[Decimal | int | None] = []
    for value in values:
        if value is None or isinstance(value, (Decimal, int)):
            out.append(value)
        elif isinstance(value, str):
            try:
                out.append(Decimal(value))
            except InvalidOperation:
                raise ValueError(f"{value!r} is not a decimal number") from None
        else:
            raise TypeError(f"money must be Decimal, int or str, got {type(value).__name__}")
    return out


def _to_array(values: Sequence[Any] | np.ndarray | pa.Array, target: pa.DataType | None) -> pa.Array:
    if isinstance(values, pa.Array):  # converted already (rows.columns_for)
        return values if target is None or values.type == target else values.cast(target)
    if target is None:
        return pa.array(values)
    if isinstance(values, np.ndarray):
        if pa.types.is_timestamp(target) and values.dtype.kind in "iu":
            # Integer ticks: reinterpret, no per-element work.
            return pa.array(values.astype(np.int64, copy=False)).cast(target)
        return pa.array(values, type=target)
    if pa.types.is_decimal(target):
        try:
            return pa.array(values, type=target)
        except pa.ArrowTypeError:
            return pa.array(_decimal_values(values), type=target)
    return pa.array(values, type=target)


# Columns that tell two emissions of one record apart (a re-emitted window, a rerating).
VERSION_COLUMNS = ("revision", "rating_version")


def dedup_token(table: str, columns: Mapping[str, ColumnValues]) -> str | None:
    """An insert deduplication token for a batch: a hash of its ids (and versions), or None without ids.

    The tables keep the tokens of their last inserted blocks (``non_replicated_deduplication_window``),
    so a retried batch, for instance after an insert that timed out but landed, is dropped at once
    instead of waiting for a merge. Hashing ids rather than the whole content relies on the records'
    contract: one id (at one version) is one record. About 6 ms per 100k ids.
    """
    ids = columns.get("id")
    if ids is None or len(ids) == 0:
        return None
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    try:
        digest.update("\x00".join(ids).encode())
    except TypeError:
        digest.update("\x00".join(map(str, ids)).encode())
    for name in VERSION_COLUMNS:
        if name in columns:
            digest.update(name.encode())
            digest.update(np.asarray(columns[name], dtype=np.int64).tobytes())
    return f"{table}-{len(ids)}-{digest.hexdigest()}"


# optimize_on_insert = 0: the engine writes an inserted block as it is, instead of first collapsing it
# "as if merge was done on this block" (ClickHouse's default, 1). Every table of the pipeline is a
# ReplacingMergeTree, so that collapse meant one more pass over every row and copies of every column,
# the long ``breakdown`` strings of rated_usage included, only to drop the duplicates a batch holds
# within itself (a replayed record landing twice in one batch). Duplicates across batches already
# wait for a background merge, so every exact read is FINAL (or argMax by version) either way, as the
# schema says; dropping within-batch duplicates one merge later changes no such read. Measured here
# (chDB, 400k rows in batches of 40k, CPU of the whole process, inserts then 3 s for merges), CPU per
# row: rated_usage 4.4-4.5 us at insert + 0.12 after, against 2.1-2.5 + 0.4-0.5; usage_records
# 1.7-2.1 + 0.06, against 0.9-1.1 + 0.2-0.25.
INSERT_SETTINGS: dict[str, int] = {"optimize_on_insert": 0}


def insert_settings(table: str, columns: Mapping[str, ColumnValues]) -> dict[str, str | int]:
    """The settings of an insert of ``columns`` into ``table``: :data:`INSERT_SETTINGS`, and the batch's
    deduplication token (:func:`dedup_token`) when it has ids."""
    settings: dict[str, str | int] = dict(INSERT_SETTINGS)
    token = dedup_token(table, columns)
    if token is not None:
        # A retried batch (same ids and versions) is dropped by the table's deduplication window.
        settings["insert_deduplication_token"] = token
    return settings


def to_arrow_table(table: str, columns: Mapping[str, ColumnValues], schema: Mapping[str, str]) -> pa.Table:
    """Build the Arrow table for ``columns`` (equal lengths, names from ``schema``) or raise BatchError."""
    names = list(columns)
    unknown = [name for name in names if name not in schema]
    if unknown:
        raise BatchError(f"{table} has no column(s) {', '.join(unknown)}", table=table, column=unknown[0])
    lengths = {len(columns[name]) for name in names}
    if len(lengths) > 1:
        raise BatchError(f"columns of unequal lengths {sorted(lengths)} for {table}", table=table)
    arrays: list[pa.Array] = []
    for name in names:
        try:
            arrays.append(_to_array(columns[name], arrow_type(schema[name])))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise BatchError(f"{table}.{name} ({schema[name]}): {exc}", table=table, column=name) from None
    return pa.Table.from_arrays(arrays, names=names)


__all__ = [
    "INSERT_SETTINGS",
    "VERSION_COLUMNS",
    "arrow_type",
    "dedup_token",
    "insert_settings",
    "split_type",
    "to_arrow_table",
]
