"""Migrations on the real engine: apply, re-apply as a no-op, refuse an edited applied file, TTL."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from warehouse.base import MigrationError
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.migrate import (
    MIGRATIONS_DIR,
    applied_migrations,
    apply_migrations,
    load_migrations,
    telemetry_ttl_days,
)
from warehouse.rows import TABLES
from warehouse.sqltext import split_statements

EXPECTED_TABLES = {
    "telemetry_samples",
    "interface_rates_1m",
    "interface_rates_5m",
    "interface_rates_1h",
    "usage_records",
    "rated_usage",
    "fault_events",
    "alerts",
    "dead_letters",
    "pipeline_metrics",
}


def _tables(wh: ChdbWarehouse) -> set[str]:
    rows = wh.query(f"SELECT name FROM system.tables WHERE database = '{wh.database}'").rows
    return {str(r[0]) for r in rows}


def test_apply_creates_every_table_and_records_each_file(fresh_db: ChdbWarehouse) -> None:
    applied = apply_migrations(fresh_db)
    names = [m.name for m in load_migrations()]
    assert applied == names
    assert _tables(fresh_db) >= EXPECTED_TABLES
    assert set(TABLES) == EXPECTED_TABLES
    recorded = applied_migrations(fresh_db)
    assert set(recorded) == set(names)
    assert all(len(checksum) == 64 for checksum in recorded.values())


def test_reapply_is_a_noop(wh: ChdbWarehouse) -> None:
    before = wh.query("SELECT count() FROM schema_migrations").rows[0][0]
    assert apply_migrations(wh) == []
    assert wh.query("SELECT count() FROM schema_migrations").rows[0][0] == before


def test_changed_applied_file_is_an_error_naming_it(fresh_db: ChdbWarehouse, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    apply_migrations(fresh_db, folder)
    edited = folder / "003_usage.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError) as caught:
        apply_migrations(fresh_db, folder)
    assert caught.value.migration == "003_usage.sql"
    assert "003_usage.sql" in str(caught.value)


def test_new_file_is_applied_after_the_others(fresh_db: ChdbWarehouse, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    apply_migrations(fresh_db, folder)
    (folder / "900_extra.sql").write_text("CREATE TABLE IF NOT EXISTS extra (a UInt8) ENGINE = Memory;")
    assert apply_migrations(fresh_db, folder) == ["900_extra.sql"]
    assert "extra" in _tables(fresh_db)


def test_failed_file_is_not_recorded_and_names_the_statement(fresh_db: ChdbWarehouse, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_broken.sql").write_text("CREATE TABLE ok (a UInt8) ENGINE = Memory;\nCREATE TABLE nonsense;")
    with pytest.raises(MigrationError, match=r"001_broken\.sql failed at statement 2"):
        apply_migrations(fresh_db, folder, telemetry_ttl_days=None)
    assert "001_broken.sql" not in applied_migrations(fresh_db)


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "add-things.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"add-things\.sql"):
        load_migrations(tmp_path)


def test_telemetry_ttl_defaults_to_seven_days_and_follows_config(wh: ChdbWarehouse) -> None:
    assert telemetry_ttl_days(wh) == 7
    apply_migrations(wh, telemetry_ttl_days=30)
    assert telemetry_ttl_days(wh) == 30
    apply_migrations(wh, telemetry_ttl_days=0)
    assert telemetry_ttl_days(wh) is None


def test_split_statements_ignores_semicolons_in_strings_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (s String DEFAULT ';') ENGINE = Memory;
    /* block; comment */ SELECT 'it''s; fine', "odd;name" ;
    ;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].endswith("ENGINE = Memory")
    assert "'it''s; fine'" in statements[1]


def test_rated_usage_inserted_at_is_the_insert_time_and_epoch_for_older_rows(
    fresh_db: ChdbWarehouse, tmp_path: Path
) -> None:
    import time

    from models.records import RatedUsage
    from warehouse.rows import columns_for

    def rated(row_id: str) -> RatedUsage:
        return RatedUsage(
            id=row_id, account="A", service="data", start_ms=0, end_ms=1, quantity=Decimal("1"), unit="MB",
            amount=Decimal("0.01"), currency="EUR", plan="p", plan_version=1, rating_version=1, rated_at_ms=2,
        )  # fmt: skip

    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "007_rated_usage_inserted_at.sql").unlink()
    apply_migrations(fresh_db, folder)
    fresh_db.insert_columns("rated_usage", columns_for("rated_usage", [rated("before")]))
    assert apply_migrations(fresh_db) == ["007_rated_usage_inserted_at.sql"]
    started = time.time()
    fresh_db.insert_columns("rated_usage", columns_for("rated_usage", [rated("after")]))
    rows = dict(
        fresh_db.query("SELECT id, toUnixTimestamp64Milli(inserted_at) FROM rated_usage ORDER BY id").rows  # type: ignore[arg-type]
    )
    assert rows["before"] == 0  # unknown, not the time of the query
    assert started - 5 <= rows["after"] / 1000 <= time.time() + 1


def test_dead_letters_rekeyed_by_id_keep_their_rows_and_collapse_replays(
    fresh_db: ChdbWarehouse, tmp_path: Path
) -> None:
    import time

    from models.codec import dead_letter_for
    from warehouse.rows import columns_for

    def letters(*offsets: int) -> list[object]:
        return [
            dead_letter_for(b"{}", topic="usage.records", stage="rating", reason="bad", partition=0, offset=offset)
            for offset in offsets
        ]

    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "008_dead_letters_keyed_by_id.sql").unlink()
    apply_migrations(fresh_db, folder)
    # Before 008: a refusal written again a few ms later (a replay, in another sink batch than the first,
    # so not dropped by the batch's deduplication token) is a second row even under FINAL.
    for offsets in ((5,), (6,), (5, 7)):
        fresh_db.insert_columns("dead_letters", columns_for("dead_letters", letters(*offsets)))
        time.sleep(0.005)
    assert fresh_db.query("SELECT count() FROM dead_letters FINAL").rows == [[4]]
    assert apply_migrations(fresh_db) == ["008_dead_letters_keyed_by_id.sql"]
    assert fresh_db.query("SELECT count(), uniqExact(id) FROM dead_letters FINAL").rows == [[3, 3]]
    key = fresh_db.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'dead_letters'"
    ).rows
    assert key == [["stage, topic, id"]]
    # After it, a replay collapses as in every other record table; the copy made on the way is gone.
    fresh_db.insert_columns("dead_letters", columns_for("dead_letters", letters(6, 8)))
    assert fresh_db.query("SELECT count() FROM dead_letters FINAL").rows == [[4]]
    assert "dead_letters_by_id" not in [row[0] for row in fresh_db.query("SHOW TABLES").rows]
