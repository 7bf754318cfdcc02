"""The read-only path refuses writes: in front of the engine, and in the engine itself (readonly=1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.base import QueryError, ReadOnlyViolation, WarehouseUnavailable
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.sqltext import check_readonly_sql

WRITES = [
    "INSERT INTO usage_records (id) VALUES ('x')",
    "DROP TABLE usage_records",
    "ALTER TABLE usage_records DELETE WHERE 1",
    "TRUNCATE TABLE usage_records",
    "CREATE TABLE x (a UInt8) ENGINE = Memory",
    "OPTIMIZE TABLE usage_records FINAL",
    "SYSTEM STOP MERGES",
    "SET readonly = 0",
    "SELECT 1; DROP TABLE usage_records",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')",
    "SELECT 1 INTO OUTFILE '/tmp/ossbss-should-not-exist.csv'",
]


@pytest.mark.parametrize("sql", WRITES)
def test_readonly_query_refuses_writes(wh: ChdbWarehouse, sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        wh.query(sql, readonly=True)
    assert wh.query("SELECT count() FROM usage_records").rows == [[0]]


def test_readonly_query_reads(wh: ChdbWarehouse) -> None:
    result = wh.query("  -- leading comment\n WITH 2 AS two SELECT two * 21 AS answer;", readonly=True)
    assert result.columns == ["answer"] and result.rows == [[42]]
    shown = wh.query("SHOW TABLES", readonly=True).rows
    assert ["rated_usage"] in shown


def test_engine_itself_refuses_writes_on_the_readonly_connection(wh: ChdbWarehouse) -> None:
    wh.query("SELECT 1", readonly=True)  # opens the read-only connection
    assert wh._ro_session is not None
    with pytest.raises(ReadOnlyViolation, match="readonly"):
        # Past the SQL gate on purpose: the engine connection must refuse on its own.
        wh._run_query(wh._ro_session, "INSERT INTO usage_records (id) VALUES ('x')")
    with pytest.raises(ReadOnlyViolation):
        wh._run_query(wh._ro_session, "SELECT 1 SETTINGS readonly = 0")
    assert wh.query("SELECT count() FROM usage_records").rows == [[0]]


def test_warehouse_opened_readonly_cannot_write(wh: ChdbWarehouse) -> None:
    reader = ChdbWarehouse(wh.path, database=wh.database, readonly=True)
    try:
        assert reader.query("SELECT count() FROM usage_records").rows == [[0]]
        with pytest.raises(ReadOnlyViolation):
            reader.execute("DROP TABLE usage_records")
        with pytest.raises(ReadOnlyViolation):
            reader.insert_columns("usage_records", {"id": ["x"]})
    finally:
        reader.close()


def test_query_errors_are_mapped(wh: ChdbWarehouse) -> None:
    with pytest.raises(QueryError) as caught:
        wh.query("SELECT * FROM no_such_table")
    assert caught.value.sql == "SELECT * FROM no_such_table"
    with pytest.raises(QueryError):
        wh.execute("CREATE TABLE broken")


def test_closed_warehouse_is_unavailable(chdb_dir: Path) -> None:
    wh = ChdbWarehouse(chdb_dir, database="closing")
    wh.close()
    with pytest.raises(WarehouseUnavailable):
        wh.query("SELECT 1")


def test_gate_allows_reads_with_keywords_inside_strings() -> None:
    sql = "SELECT 'DROP TABLE x; file(1)' AS s -- INTO OUTFILE\n"
    assert check_readonly_sql(sql) == "SELECT 'DROP TABLE x; file(1)' AS s -- INTO OUTFILE"
    assert check_readonly_sql("EXPLAIN SELECT 1") == "EXPLAIN SELECT 1"
    assert check_readonly_sql("(SELECT 1) UNION ALL (SELECT 2)")
