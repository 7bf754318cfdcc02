"""The warehouse room: ClickHouse schema, drivers and the batched idempotent sink's insert path.

Pick a driver by URL with :func:`open_warehouse`:

* ``chdb:///abs/dir``, ``chdb://rel/dir``, ``chdb://`` (``var/clickhouse``) or a bare path: the
  embedded engine (chDB), owned by one process;
* ``clickhouse://user:pass@host:8123/db`` or ``clickhouses://...`` (TLS): a ClickHouse server;
  the password may instead come from ``OSSBSS_CLICKHOUSE_PASSWORD``.

Then :func:`warehouse.migrate.apply_migrations` creates the tables, :func:`warehouse.rows.columns_for`
turns records into columns and :meth:`Warehouse.insert_columns` writes them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from warehouse.base import (
    BatchError,
    MigrationError,
    QueryError,
    QueryResult,
    ReadOnlyViolation,
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
)
from warehouse.urls import WarehouseURL, WarehouseURLError, parse_warehouse_url


def open_warehouse(url: str, **opts: Any) -> Warehouse:
    """Open the warehouse named by ``url``.

    Options: ``database`` (overrides the URL's), ``readonly`` (every query read-only, writes refused;
    chdb opens only its read-only connection), ``connect_timeout`` and ``send_receive_timeout``
    (server, seconds).
    """
    parsed = parse_warehouse_url(url)
    database = opts.pop("database", None) or parsed.database
    if parsed.driver == "chdb":
        from warehouse.chdb_driver import ChdbWarehouse

        assert parsed.path is not None  # the parser always sets it for chdb
        return ChdbWarehouse(parsed.path, database=database, readonly=bool(opts.pop("readonly", False)), **opts)
    from warehouse.server_driver import ClickHouseServerWarehouse

    return ClickHouseServerWarehouse(dataclasses.replace(parsed, database=database), **opts)


__all__ = [
    "BatchError",
    "MigrationError",
    "QueryError",
    "QueryResult",
    "ReadOnlyViolation",
    "Warehouse",
    "WarehouseError",
    "WarehouseURL",
    "WarehouseURLError",
    "WarehouseUnavailable",
    "open_warehouse",
    "parse_warehouse_url",
]
