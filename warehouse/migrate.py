"""Schema migrations: plain ClickHouse SQL files ``NNN_name.sql``, applied in order, recorded once.

Each applied file is recorded in ``schema_migrations`` (name, sha256 checksum, applied_at). Running
again applies only files not yet recorded; a recorded file whose content has changed is an error
naming it (write a new migration instead of editing an applied one). Files may hold several
statements separated by ``;``; they are sent one at a time, because a server runs one per request.
A file is recorded only after all its statements succeeded; statements use ``IF NOT EXISTS`` so a
file that failed half-way can simply be run again once fixed.

After the files, the TTL of ``telemetry_samples`` is set from configuration
(``telemetry_ttl_days``, default 7) with ``ALTER TABLE ... MODIFY TTL`` when it differs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from warehouse.base import MigrationError, Warehouse, WarehouseError
from warehouse.sqltext import split_statements

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_TELEMETRY_TTL_DAYS = 7

_FILE_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
_TTL_DAYS = re.compile(r"TTL toDateTime\(ts\) \+ toIntervalDay\((\d+)\)")

log = logging.getLogger(__name__)

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY name
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    name: str
    sql: str
    checksum: str

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory``, in number order; misnamed or duplicate numbers are errors."""
    migrations: list[Migration] = []
    numbers: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNN_lowercase_name.sql", path.name)
        number = int(match.group(1))
        if number in numbers:
            raise MigrationError(f"migrations {numbers[number]} and {path.name} share number {number}", path.name)
        numbers[number] = path.name
        raw = path.read_bytes()
        migrations.append(Migration(path.name, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()))
    return sorted(migrations, key=lambda m: int(m.name.split("_", 1)[0]))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def applied_migrations(warehouse: Warehouse) -> dict[str, str]:
    """Name -> checksum of every migration recorded in ``schema_migrations``."""
    warehouse.execute(SCHEMA_MIGRATIONS_DDL)
    result = warehouse.query("SELECT name, argMax(checksum, applied_at) FROM schema_migrations GROUP BY name")
    return {str(name): str(checksum) for name, checksum in result.rows}


def apply_migrations(
    warehouse: Warehouse,
    directory: Path | None = None,
    *,
    telemetry_ttl_days: int | None = DEFAULT_TELEMETRY_TTL_DAYS,
) -> list[str]:
    """Apply pending migrations in order and set the telemetry TTL; returns the names applied now."""
    migrations = load_migrations(directory or MIGRATIONS_DIR)
    applied = applied_migrations(warehouse)
    known = {m.name for m in migrations}
    for name in sorted(set(applied) - known):
        log.warning("migration %s is recorded as applied but its file is missing", name)
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} changed after it was applied "
                f"(recorded sha256 {recorded[:12]}..., file {migration.checksum[:12]}...); "
                "add a new migration instead of editing an applied one",
                migration.name,
            )
    done: list[str] = []
    for migration in migrations:
        if migration.name in applied:
            continue
        for index, statement in enumerate(migration.statements, start=1):
            try:
                warehouse.execute(statement)
            except WarehouseError as exc:
                raise MigrationError(
                    f"migration {migration.name} failed at statement {index}: {exc}", migration.name
                ) from exc
        # Recorded only after every statement succeeded, so a failed file is retried whole.
        warehouse.execute(
            "INSERT INTO schema_migrations (name, checksum) VALUES "
            f"({_quote(migration.name)}, {_quote(migration.checksum)})"
        )
        log.info("applied migration %s", migration.name)
        done.append(migration.name)
    if telemetry_ttl_days is not None:
        set_telemetry_ttl(warehouse, telemetry_ttl_days)
    return done


def telemetry_ttl_days(warehouse: Warehouse) -> int | None:
    """The TTL of ``telemetry_samples`` in days, or ``None`` when it keeps rows forever."""
    result = warehouse.query(
        "SELECT engine_full FROM system.tables "
        f"WHERE database = {_quote(warehouse.database)} AND name = 'telemetry_samples'"
    )
    if not result.rows:
        raise MigrationError("telemetry_samples does not exist; apply the migrations first")
    match = _TTL_DAYS.search(str(result.rows[0][0]))
    return int(match.group(1)) if match else None


def set_telemetry_ttl(warehouse: Warehouse, days: int) -> bool:
    """Keep ``telemetry_samples`` rows ``days`` days (0: forever); returns whether the TTL changed."""
    if days < 0:
        raise MigrationError(f"telemetry TTL must be 0 (keep forever) or a number of days, got {days}")
    current = telemetry_ttl_days(warehouse)
    wanted = days or None
    if current == wanted:
        return False
    if wanted is None:
        warehouse.execute("ALTER TABLE telemetry_samples REMOVE TTL")
    else:
        warehouse.execute(f"ALTER TABLE telemetry_samples MODIFY TTL toDateTime(ts) + INTERVAL {int(days)} DAY")
    log.info("telemetry_samples TTL changed from %s to %s days", current, wanted)
    return True


__all__ = [
    "DEFAULT_TELEMETRY_TTL_DAYS",
    "MIGRATIONS_DIR",
    "Migration",
    "applied_migrations",
    "apply_migrations",
    "load_migrations",
    "set_telemetry_ttl",
    "telemetry_ttl_days",
]
