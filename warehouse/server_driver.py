"""The server driver: a ClickHouse server over HTTP(S) through clickhouse-connect.

The client is created on first use, so building the driver never touches the network; connection
failures become :class:`WarehouseUnavailable` (back off and retry), refusals :class:`QueryError`.
Batches go in as Arrow (``insert_arrow``), the same exact encoding the embedded driver uses.
The password is never logged: ``repr`` and error messages use the redacted URL.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

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
from warehouse.urls import WarehouseURL

_READONLY_CODES = ("Code: 164", "READONLY")


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class ClickHouseServerWarehouse(Warehouse):
    """Warehouse on a ClickHouse server; ``url`` comes from :func:`warehouse.urls.parse_warehouse_url`."""

    def __init__(
        self,
        url: WarehouseURL,
        *,
        readonly: bool = False,
        connect_timeout: float = 10.0,
        send_receive_timeout: float = 300.0,
    ) -> None:
        self.url = url
        self.database = url.database
        self.readonly = readonly
        self._connect_timeout = connect_timeout
        self._send_receive_timeout = send_receive_timeout
        self._client: Any = None
        self._lock = threading.Lock()  # one HTTP session per client; serialise its use
        self._schemas: dict[str, dict[str, str]] = {}

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            client = clickhouse_connect.get_client(
                host=self.url.host,
                port=self.url.port,
                username=self.url.user,
                password=self.url.password,
                secure=self.url.secure,
                connect_timeout=self._connect_timeout,
                send_receive_timeout=self._send_receive_timeout,
            )
            client.command(f"CREATE DATABASE IF NOT EXISTS {_quote_ident(self.database)}")
            client.database = self.database
        except ClickHouseError as exc:
            raise self._map_error(exc, "") from None
        self._client = client
        return client

    def _map_error(self, exc: Exception, sql: str) -> WarehouseError:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        # Error text from the server never contains the password; the URL is redacted anyway.
        message = f"{self.url.redacted()}: {exc}"
        if isinstance(exc, OperationalError):
            return WarehouseUnavailable(message)
        if isinstance(exc, DatabaseError) and any(code in str(exc) for code in _READONLY_CODES):
            return ReadOnlyViolation(message, sql=sql)
        return QueryError(message, sql=sql)

    def _call(self, sql: str, method: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        with self._lock:
            client = self._get_client()
            try:
                return getattr(client, method)(*args, **kwargs)
            except ClickHouseError as exc:
                raise self._map_error(exc, sql) from None

    def _refuse_if_readonly(self, sql: str) -> None:
        if self.readonly:
            raise ReadOnlyViolation("this warehouse was opened read-only", sql=sql)

    def execute(self, sql: str) -> None:
        self._refuse_if_readonly(sql)
        self._schemas.clear()
        self._call(sql, "command", sql)

    def query(self, sql: str, *, readonly: bool = False) -> QueryResult:
        settings: dict[str, Any] = {}
        if readonly or self.readonly:
            sql = check_readonly_sql(sql)
            # The server enforces it too: with readonly=1 it refuses writes and setting changes.
            settings["readonly"] = 1
        result = self._call(sql, "query", sql, settings=settings)
        return QueryResult(
            columns=list(result.column_names),
            types=[t.name for t in result.column_types],
            rows=[list(row) for row in result.result_rows],
        )

    def table_columns(self, table: str) -> dict[str, str]:
        """Column name -> ClickHouse type of ``table`` in this database, in table order (cached)."""
        cached = self._schemas.get(table)
        if cached is not None:
            return cached
        sql = (
            "SELECT name, type FROM system.columns "
            "WHERE database = {db:String} AND table = {t:String} ORDER BY position"
        )
        result = self._call(sql, "query", sql, parameters={"db": self.database, "t": table})
        if not result.result_rows:
            raise QueryError(f"table {self.database}.{table} does not exist")
        columns = {str(name): str(ch_type) for name, ch_type in result.result_rows}
        self._schemas[table] = columns
        return columns

    def insert_columns(self, table: str, columns: Mapping[str, ColumnValues]) -> int:
        self._refuse_if_readonly(f"INSERT INTO {table}")
        if not columns:
            return 0
        batch = to_arrow_table(table, columns, self.table_columns(table))
        if batch.num_rows == 0:
            return 0
        settings = insert_settings(table, columns)
        self._call(f"INSERT INTO {table}", "insert_arrow", table, batch, database=self.database, settings=settings)
        return int(batch.num_rows)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __repr__(self) -> str:
        return f"ClickHouseServerWarehouse({self.url.redacted()!r})"


__all__ = ["ClickHouseServerWarehouse"]
