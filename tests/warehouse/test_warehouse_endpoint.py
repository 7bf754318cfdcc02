"""The local SQL endpoint: another process reads while this one owns the chDB directory."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from models.records import RatedUsage
from tests.warehouse.conftest import run_child
from warehouse.base import ReadOnlyViolation
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.endpoint import (
    EndpointUnreachable,
    endpoint_state_file,
    fetch_via_endpoint,
    query_via_endpoint,
    serve_sql,
)
from warehouse.rows import columns_for

READER = """
import json, sys
from warehouse.endpoint import run_readonly_query
from warehouse.base import WarehouseError
try:
    result = run_readonly_query(sys.argv[1], sys.argv[2])
except WarehouseError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({
        "columns": result.columns,
        "rows": [[str(v) for v in row] for row in result.rows],
        "opened_engine": "chdb" in sys.modules,
    }))
"""


def _seed(wh: ChdbWarehouse, first: int = 0) -> None:
    rated = [
        RatedUsage(
            id=f"u{i}",
            account="acct",
            service="s",
            start_ms=0,
            end_ms=0,
            quantity=Decimal(1),
            unit="GB",
            amount=Decimal("0.100001"),
            currency="EUR",
            plan="p",
        )
        for i in range(first, first + 3)
    ]
    wh.insert_columns("rated_usage", columns_for("rated_usage", rated))


def _read(url: str, sql: str) -> dict:
    child = run_child(READER, url, sql)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_second_process_reads_through_the_endpoint_while_owner_holds_the_engine(wh: ChdbWarehouse) -> None:
    _seed(wh)
    state = endpoint_state_file(wh.path)
    endpoint = serve_sql(wh, state)
    try:
        assert json.loads(state.read_text())["port"] == endpoint.port
        assert state.stat().st_mode & 0o077 == 0  # the token is for the directory's owner only
        answer = _read(f"chdb://{wh.path}?database={wh.database}", "SELECT count(), sum(amount) FROM rated_usage")
        assert answer["rows"] == [["3", "0.300003"]]
        assert answer["opened_engine"] is False  # it never touched the locked directory
        refused = _read(f"chdb://{wh.path}?database={wh.database}", "DROP TABLE rated_usage")
        assert refused["error"] == "ReadOnlyViolation"
        # The owner keeps writing meanwhile.
        _seed(wh, first=3)
        assert wh.query("SELECT count() FROM rated_usage").rows == [[6]]
    finally:
        endpoint.stop()
    assert not state.exists()


def test_endpoint_formats_and_propagates_errors(wh: ChdbWarehouse) -> None:
    _seed(wh)
    state = endpoint_state_file(wh.path)
    with serve_sql(wh, state):
        result = fetch_via_endpoint(state, "SELECT id, amount FROM rated_usage ORDER BY id LIMIT 1")
        assert result.rows == [["u0", Decimal("0.100001")]]
        assert result.types == ["String", "Decimal(18, 6)"]
        assert query_via_endpoint(state, "SELECT id, amount FROM rated_usage ORDER BY id", "csv") == (
            "id,amount\nu0,0.100001\nu1,0.100001\nu2,0.100001\n"
        )
        with pytest.raises(ReadOnlyViolation):
            fetch_via_endpoint(state, "INSERT INTO rated_usage (id) VALUES ('x')")
        good = json.loads(state.read_text())
        state.write_text(json.dumps({**good, "token": "wrong"}))
        with pytest.raises(EndpointUnreachable, match="401"):
            fetch_via_endpoint(state, "SELECT 1")
        state.write_text(json.dumps(good))


def test_reader_opens_the_directory_itself_when_no_pipeline_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "wh"
    writer = run_child(
        """
        import sys
        from decimal import Decimal
        from warehouse import open_warehouse
        from warehouse.migrate import apply_migrations
        wh = open_warehouse("chdb://" + sys.argv[1])
        apply_migrations(wh)
        wh.insert_columns("rated_usage", {"id": ["a", "b"], "amount": [Decimal("1.5"), "2.25"]})
        wh.close()
        """,
        str(data_dir),
    )
    assert writer.returncode == 0, writer.stderr
    # A stale state file from an owner that died must not get in the way.
    endpoint_state_file(data_dir).write_text(json.dumps({"host": "127.0.0.1", "port": 9, "token": "t"}))
    answer = _read(f"chdb://{data_dir}", "SELECT sum(amount) FROM rated_usage")
    assert answer["rows"] == [["3.750000"]]
    assert answer["opened_engine"] is True
    missing = _read(f"chdb://{tmp_path / 'nothing-here'}", "SELECT 1")
    assert missing["error"] == "WarehouseUnavailable"
