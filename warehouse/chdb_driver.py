"""The embedded driver: ClickHouse in-process through chDB, data in one directory.

One process owns a data directory (chDB locks it); inside that process this driver holds two
connections to the same engine: a read-write one for the pipeline, and a lazily opened read-only one
(``mode=ro``, the engine's ``readonly=1``) for analysts' SQL, each behind its own lock so a long
query does not stall the sink.

Insert path, measured here (2 shared cores, chDB 4.4 / ClickHouse 26.9, batches of 100k rows).
Options tried on a 16-column table with a Decimal(18, 6) and a DateTime64(3) column, Arrow built
from Python values (Decimals passed as ``decimal128``, exact):

* ``INSERT ... SELECT FROM Python(arrow_table)``      ~0.55-0.65M rows/s including the Arrow build
* ``INSERT ... SELECT FROM Python(pandas_df)`` with ``toDecimal64(str, 6)`` casts  ~0.5M rows/s
* ``send_insert(..., "ArrowStream")`` with the IPC bytes  ~0.25-0.33M rows/s
* ``send_insert(..., "Parquet")``  ~0.3M rows/s;  ``JSONEachRow`` (msgspec-encoded)  ~0.08M rows/s

On the 20-column ``telemetry_samples`` the engine side alone takes ~105-125 ms per 100k rows through
``Python()`` against ~220-250 ms through ``ArrowStream``, and building the Arrow table from the
columns ~45-50 ms, the deduplication token ~6 ms. End to end ``insert_columns`` ran at ~475-530k
rows/s against ~540-650k rows/s for a raw ``Python()`` insert of a ready Arrow table
(``ossbss bench warehouse_insert``: ratio ~0.83-0.88), both at the engine's default settings; with
``optimize_on_insert = 0`` (``warehouse.columnar.INSERT_SETTINGS``) on both, 561k against 798k (0.70).
Arrow's ``decimal128`` carries money as scaled integers with no cast and no float, so Arrow through
``Python()`` it is.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import msgspec
from chdb import session as chdb_session

from warehouse.base import (
    ColumnValues,
    QueryError,
    QueryResult,
    ReadOnlyViolation,
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
)
from warehouse.columnar import insert_settings, to_arrow_table
from warehouse.sqltext import check_readonly_sql
from warehouse.urls import DEFAULT_DATABASE
from warehouse.values import decode_rows

# Floats parse as Decimal so no Decimal(18, 6) ever passes through a binary float; Float64 columns
# are turned back into float by their decoder.
_JSON = msgspec.json.Decoder(float_hook=Decimal)

_READONLY_CODE = "Code: 164."


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settings_clause(settings: Mapping[str, str | int]) -> str:
    """`` SETTINGS a = 1, b = 'x'`` for a query's settings (strings quoted)."""
    return " SETTINGS " + ", ".join(
        f"{name} = {value if isinstance(value, int) else _quote_str(value)}" for name, value in settings.items()
    )


def _map_error(exc: Exception, sql: str) -> WarehouseError:
    """Engine exceptions to the warehouse error tree (chDB raises RuntimeError subclasses)."""
    message = str(exc)
    if _READONLY_CODE in message:
        return ReadOnlyViolation(message, sql=sql)
    if "is closed" in message.lower():
        return WarehouseUnavailable(message)
    return QueryError(message, sql=sql)


class ChdbWarehouse(Warehouse):
    """Warehouse on an embedded chDB data directory.

    ``readonly=True`` opens only the read-only connection (for a process that just reads, such as
    ``ossbss sql`` when no pipeline runs); writes then fail with :class:`ReadOnlyViolation`.
    """

    def __init__(self, path: str | Path, *, database: str = DEFAULT_DATABASE, readonly: bool = False) -> None:
        self.path = Path(path).resolve()
        self.database = database
        self.readonly = readonly
        self._lock = threading.Lock()  # guards the read-write connection
        self._ro_lock = threading.Lock()  # guards the read-only connection
        self._session: chdb_session.Session | None = None
        self._ro_session: chdb_session.Session | None = None
        self._schemas: dict[str, dict[str, str]] = {}
        if readonly:
            self._ro_session = self._open_readonly()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._session = self._connect(str(self.path))
            setup = f"CREATE DATABASE IF NOT EXISTS {_quote_ident(database)}"
            try:
                self._session.query(setup)
                self._session.query(f"USE {_quote_ident(database)}")
            except RuntimeError as exc:
                self._session.close()
                raise _map_error(exc, setup) from None

    def _connect(self, conn_str: str) -> chdb_session.Session:
        try:
            return chdb_session.Session(conn_str)
        except RuntimeError as exc:
            raise WarehouseUnavailable(
                f"cannot open the chDB data directory {self.path}: {exc}; another process may own it "
                "(query it through that process's SQL endpoint)",
                retry_after=5.0,
            ) from None

    def _open_readonly(self) -> chdb_session.Session:
        if not self.path.is_dir():
            raise WarehouseUnavailable(f"no chDB data directory at {self.path}")
        ro = self._connect(f"{self.path}?mode=ro")
        try:
            ro.query(f"USE {_quote_ident(self.database)}")
        except RuntimeError as exc:
            ro.close()
            raise QueryError(f"database {self.database!r} not found in {self.path}: {exc}") from None
        return ro

    def _rw(self) -> chdb_session.Session:
        if self._session is None:
            if self.readonly:
                raise ReadOnlyViolation("this warehouse was opened read-only")
            raise WarehouseUnavailable("the chDB warehouse is closed")
        return self._session

    def execute(self, sql: str) -> None:
        with self._lock:
            try:
                self._rw().query(sql)
            except WarehouseError:
                raise
            except RuntimeError as exc:
                raise _map_error(exc, sql) from None
            finally:
                # DDL may have changed a table's columns; re-read them on next insert.
                self._schemas.clear()

    def query(self, sql: str, *, readonly: bool = False) -> QueryResult:
        if readonly or self.readonly:
            statement = check_readonly_sql(sql)
            with self._ro_lock:
                if self._ro_session is None:
                    self._ro_session = self._open_readonly()
                return self._run_query(self._ro_session, statement)
        with self._lock:
            return self._run_query(self._rw(), sql)

    @staticmethod
    def _run_query(conn: chdb_session.Session, sql: str) -> QueryResult:
        try:
            raw = conn.query(sql, "JSONCompact")
        except RuntimeError as exc:
            raise _map_error(exc, sql) from None
        payload = raw.bytes()
        if not payload.strip():
            # Statements without a result set (SET, USE, DDL) print nothing.
            return QueryResult(columns=[], types=[])
        doc = _JSON.decode(payload)
        meta = doc.get("meta", [])
        types = [m["type"] for m in meta]
        rows = decode_rows(types, doc.get("data", []))
        return QueryResult(columns=[m["name"] for m in meta], types=types, rows=rows)

    def table_columns(self, table: str) -> dict[str, str]:
        """Column name -> ClickHouse type of ``table`` in this database, in table order (cached)."""
        cached = self._schemas.get(table)
        if cached is not None:
            return cached
        result = self.query(
            "SELECT name, type FROM system.columns "
            f"WHERE database = {_quote_str(self.database)} AND table = {_quote_str(table)} ORDER BY position"
        )
        if not result.rows:
            raise QueryError(f"table {self.database}.{table} does not exist")
        columns = {str(name): str(ch_type) for name, ch_type in result.rows}
        self._schemas[table] = columns
        return columns

    def insert_columns(self, table: str, columns: Mapping[str, ColumnValues]) -> int:
        if not columns:
            return 0
        ossbss_arrow_batch = to_arrow_table(table, columns, self.table_columns(table))
        rows = int(ossbss_arrow_batch.num_rows)
        if rows == 0:
            return 0
        names = ", ".join(_quote_ident(name) for name in ossbss_arrow_batch.column_names)
        target = f"{_quote_ident(self.database)}.{_quote_ident(table)}"
        # chDB's Python() reads the Arrow table by variable name from the calling frames, zero-copy;
        # the name is unusual so no frame in between can shadow it.
        sql = f"INSERT INTO {target} ({names}) SELECT {names} FROM Python(ossbss_arrow_batch)"
        sql += settings_clause(insert_settings(table, columns))
        with self._lock:
            try:
                self._rw().query(sql)
            except WarehouseError:
                raise
            except RuntimeError as exc:
                raise _map_error(exc, sql) from None
        return rows

    def close(self) -> None:
        with self._lock, self._ro_lock:
            for conn in (self._ro_session, self._session):
                if conn is not None:
                    conn.close()
            self._session = self._ro_session = None

    def __enter__(self) -> ChdbWarehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"ChdbWarehouse({str(self.path)!r}, database={self.database!r}, {mode})"


__all__ = ["ChdbWarehouse", "settings_clause"]
