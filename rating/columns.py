"""Columnar usage batches: the kernel's input shape, and conversions from and to records.

A batch is a mapping of column name to a 1-D array (or list), all of one length:

| column        | type          | required | meaning                                         |
| ------------- | ------------- | -------- | ----------------------------------------------- |
| ``id``        | str           | yes      | usage record id (idempotency key)               |
| ``account``   | str           | yes      |                                                 |
| ``start_ms``  | int64         | yes      | epoch ms, UTC                                   |
| ``end_ms``    | int64         | yes      | epoch ms, not before ``start_ms``               |
| ``service``   | str           | no ("")  |                                                 |
| ``bytes_up``  | int64         | no (0)   |                                                 |
| ``bytes_down``| int64         | no (0)   |                                                 |
| ``duration_s``| int64         | no (-1)  | -1: unknown, use ``end_ms - start_ms``          |
| ``destination``| str          | no ("")  | dialled number for zone charges                 |
| ``event_type``| str           | no ("data") |                                              |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.records import UsageRecord
from rating.errors import ColumnsError

TEXT_COLUMNS = ("id", "account", "service", "destination", "event_type")
INT_COLUMNS = ("start_ms", "end_ms", "bytes_up", "bytes_down", "duration_s")
DEFAULTS: dict[str, Any] = {
    "service": "",
    "destination": "",
    "event_type": "data",
    "bytes_up": 0,
    "bytes_down": 0,
    "duration_s": -1,
}
REQUIRED = ("id", "account", "start_ms", "end_ms")
MAX_EPOCH_MS = 32503680000000  # year 3000, as models.records.EpochMs
MAX_BYTES = 10**15  # as models.records.UsageRecord


@dataclass(frozen=True)
class UsageColumns:
    """A validated batch: text columns as object arrays, numbers as int64."""

    id: np.ndarray
    account: np.ndarray
    service: np.ndarray
    destination: np.ndarray
    event_type: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    duration_s: np.ndarray

    @property
    def size(self) -> int:
        return int(self.id.shape[0])

    def take(self, rows: np.ndarray) -> UsageColumns:
        return UsageColumns(**{name: getattr(self, name)[rows] for name in TEXT_COLUMNS + INT_COLUMNS})

    def record(self, row: int) -> UsageRecord:
        """One row as a :class:`UsageRecord` (for the reference path and for refusal reasons)."""
        duration = int(self.duration_s[row])
        return UsageRecord(
            id=str(self.id[row]),
            account=str(self.account[row]),
            service=str(self.service[row]),
            start_ms=int(self.start_ms[row]),
            end_ms=int(self.end_ms[row]),
            bytes_up=int(self.bytes_up[row]),
            bytes_down=int(self.bytes_down[row]),
            duration_s=None if duration < 0 else duration,
            destination=str(self.destination[row]),
            event_type=str(self.event_type[row]),
        )

    def invalid_rows(self) -> dict[int, str]:
        """Rows a :class:`UsageRecord` would not accept, with the reason (they are refused, not raised)."""
        problems: dict[int, str] = {}
        checks = (
            ((self.start_ms < 0) | (self.start_ms > MAX_EPOCH_MS), "start_ms out of range"),
            ((self.end_ms < 0) | (self.end_ms > MAX_EPOCH_MS), "end_ms out of range"),
            (self.end_ms < self.start_ms, "end_ms is before start_ms"),
            ((self.bytes_up < 0) | (self.bytes_up > MAX_BYTES), "bytes_up out of range"),
            ((self.bytes_down < 0) | (self.bytes_down > MAX_BYTES), "bytes_down out of range"),
            (self.duration_s < -1, "duration_s is negative"),
        )
        for mask, reason in checks:
            for row in np.flatnonzero(mask).tolist():
                problems.setdefault(row, reason)
        return problems


def _text(values: Any, name: str, size: int) -> np.ndarray:
    array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if array.dtype != object:
        array = array.astype(object)
    if array.ndim != 1 or array.shape[0] != size:
        raise ColumnsError(name, f"expected {size} values, got shape {array.shape}")
    return array


def _ints(values: Any, name: str, size: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != size:
        raise ColumnsError(name, f"expected {size} values, got shape {array.shape}")
    if array.dtype.kind == "f" or array.dtype.kind not in "iub":
        raise ColumnsError(name, f"must be integers, not {array.dtype}")
    return array.astype(np.int64, copy=False)


def to_columns(columns: Mapping[str, Any] | UsageColumns) -> UsageColumns:
    """Validate and normalise a mapping of columns (missing optional ones take their defaults)."""
    if isinstance(columns, UsageColumns):
        return columns
    for name in REQUIRED:
        if name not in columns:
            raise ColumnsError(name, "is required")
    size = len(columns["id"])
    values: dict[str, np.ndarray] = {}
    for name in TEXT_COLUMNS:
        raw = columns.get(name)
        values[name] = _text(raw, name, size) if raw is not None else np.full(size, DEFAULTS[name], dtype=object)
    for name in INT_COLUMNS:
        raw = columns.get(name)
        values[name] = _ints(raw, name, size) if raw is not None else np.full(size, DEFAULTS[name], dtype=np.int64)
    return UsageColumns(**values)


def records_to_columns(records: Sequence[UsageRecord]) -> UsageColumns:
    """Records to columns, one pass per field (a list comprehension, then ``fromiter`` over the list:
    about 45 ns a value, against 60 through a generator)."""
    count = len(records)
    return UsageColumns(
        id=np.array([r.id for r in records], dtype=object),
        account=np.array([r.account for r in records], dtype=object),
        service=np.array([r.service for r in records], dtype=object),
        destination=np.array([r.destination for r in records], dtype=object),
        event_type=np.array([r.event_type for r in records], dtype=object),
        start_ms=np.fromiter([r.start_ms for r in records], dtype=np.int64, count=count),
        end_ms=np.fromiter([r.end_ms for r in records], dtype=np.int64, count=count),
        bytes_up=np.fromiter([r.bytes_up for r in records], dtype=np.int64, count=count),
        bytes_down=np.fromiter([r.bytes_down for r in records], dtype=np.int64, count=count),
        duration_s=np.fromiter(
            [-1 if r.duration_s is None else r.duration_s for r in records], dtype=np.int64, count=count
        ),
    )


__all__ = ["INT_COLUMNS", "REQUIRED", "TEXT_COLUMNS", "UsageColumns", "records_to_columns", "to_columns"]
