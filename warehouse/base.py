"""The warehouse contract: one interface, two drivers (embedded chDB, ClickHouse server).

Error tree::

    WarehouseError
    ├── WarehouseUnavailable   the engine or server cannot be reached now; retry with backoff
    ├── QueryError             the engine refused a statement (bad SQL, missing table); carries ``sql``
    │   ├── ReadOnlyViolation  a statement that would write was sent through a read-only path
    │   └── BatchError         a columnar batch does not fit its table; carries ``table`` and ``column``
    └── MigrationError         a migration file failed; carries ``migration``
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

# A column of a batch: a Python sequence, or a numpy array (handed to Arrow without a copy).
ColumnValues: TypeAlias = Sequence[Any] | np.ndarray | pa.Array


class WarehouseError(Exception):
    """Root of every warehouse error."""


class WarehouseUnavailable(WarehouseError):
    """The engine or server cannot be reached; the caller should back off and retry."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueryError(WarehouseError):
    """The engine refused a statement."""

    def __init__(self, message: str, sql: str = "") -> None:
        super().__init__(message)
        self.sql = sql


class ReadOnlyViolation(QueryError):
    """A statement that writes was sent through a read-only path."""


class BatchError(QueryError):
    """A batch cannot be inserted as given (unknown column, wrong type, lossy money); retrying won't help."""

    def __init__(self, message: str, table: str = "", column: str = "") -> None:
        super().__init__(message)
        self.table = table
        self.column = column


class MigrationError(WarehouseError):
    def __init__(self, message: str, migration: str = "") -> None:
        super().__init__(message)
        self.migration = migration


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query, column-named and typed as the engine reports them."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]] = field(default_factory=list)


class Warehouse(ABC):
    """What every driver offers. Table names are unqualified; the driver targets its database."""

    database: str

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT, OPTIMIZE)."""

    @abstractmethod
    def query(self, sql: str, *, readonly: bool = False) -> QueryResult:
        """Run a query and return its rows; with ``readonly`` the engine refuses any write."""

    @abstractmethod
    def insert_columns(self, table: str, columns: Mapping[str, ColumnValues]) -> int:
        """Insert a columnar batch (equal-length columns, named as the table's); returns rows inserted."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine or connection."""


__all__ = [
    "BatchError",
    "ColumnValues",
    "MigrationError",
    "QueryError",
    "QueryResult",
    "ReadOnlyViolation",
    "Warehouse",
    "WarehouseError",
    "WarehouseUnavailable",
]
