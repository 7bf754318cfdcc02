"""Warehouse insert throughput on the embedded engine (chDB).

``warehouse_insert``: rows/s through :meth:`Warehouse.insert_columns` for ``telemetry_samples``
batches (columns as :func:`warehouse.rows.columns_for` makes them: lists and numpy arrays, 20
columns with nullable 64-bit counters and a DateTime64), which includes building the Arrow table.
Baseline: the fastest raw chDB insert of the same rows measured here, an Arrow table built
beforehand (untimed) handed to ``INSERT ... SELECT FROM Python(table)`` on a plain chDB session,
into an identical table, with the same engine settings (``warehouse.columnar.INSERT_SETTINGS``).
Batches of the two paths alternate so machine noise hits both alike.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import chdb
from chdb import session as chdb_session

from bench import BenchResult, benchmark
from models.records import TelemetrySample
from warehouse.chdb_driver import ChdbWarehouse, settings_clause
from warehouse.columnar import INSERT_SETTINGS, to_arrow_table
from warehouse.migrate import apply_migrations
from warehouse.rows import columns_for

TABLE = "telemetry_samples"
RAW_TABLE = "telemetry_samples_raw"


def _samples(batch: int, rows: int, now_ms: int) -> list[TelemetrySample]:
    """One poll cycle-like batch: 1000 devices x 48 interfaces, counters filled, timestamps recent."""
    out = []
    for i in range(rows):
        device, if_index = f"bench-{i % 1000:04d}", i % 48
        # Recent timestamps: rows older than the table's TTL would be dropped by the engine.
        ts = now_ms - (batch * rows + i) * 7
        out.append(
            TelemetrySample(
                id=TelemetrySample.make_id(device, if_index, ts),
                device=device,
                if_index=if_index,
                ts_ms=ts,
                if_name=f"xe-0/0/{if_index}",
                in_octets=i * 1500,
                out_octets=i * 900,
                in_ucast_pkts=i,
                out_ucast_pkts=i,
                in_errors=0,
                out_errors=0,
                in_discards=0,
                out_discards=0,
                speed_bps=10**10,
                oper_status=1,
                uptime_ticks=i,
                source="bench",
            )
        )
    return out


@benchmark("warehouse_insert", "rows/s into telemetry_samples via insert_columns (chDB) vs raw chDB Arrow insert")
def warehouse_insert(quick: bool) -> BenchResult:
    batches, rows = (3, 20_000) if quick else (8, 100_000)
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="ossbss-bench-wh-") as tmp:
        path = Path(tmp)
        wh = ChdbWarehouse(path, database="bench")
        raw = chdb_session.Session(str(path))
        try:
            apply_migrations(wh)
            wh.execute(f"CREATE TABLE {RAW_TABLE} AS {TABLE}")
            schema = wh.table_columns(TABLE)
            # Warm-up of both paths (first insert pays for schema lookup, Arrow and engine caches).
            wh.insert_columns(TABLE, columns_for(TABLE, _samples(0, rows, now_ms)))
            warm = to_arrow_table(TABLE, columns_for(TABLE, _samples(1, rows, now_ms)), schema)  # noqa: F841
            same = settings_clause(INSERT_SETTINGS)
            raw.query(f"INSERT INTO bench.{RAW_TABLE} SELECT * FROM Python(warm)" + same)
            ours = base = converting = 0.0
            for b in range(batches):
                # Batches are made one at a time: holding all of them would make each GC pass slow.
                records = _samples(2 + 2 * b, rows, now_ms)
                gc.collect()
                t0 = time.perf_counter()
                columns = columns_for(TABLE, records)
                t1 = time.perf_counter()
                wh.insert_columns(TABLE, columns)
                ours += time.perf_counter() - t1
                converting += t1 - t0
                # Python() reads the Arrow table by its variable name.
                twin = columns_for(TABLE, _samples(3 + 2 * b, rows, now_ms))
                arrow_batch = to_arrow_table(TABLE, twin, schema)
                gc.collect()
                t0 = time.perf_counter()
                raw.query(f"INSERT INTO bench.{RAW_TABLE} SELECT * FROM Python(arrow_batch)" + same)
                base += time.perf_counter() - t0
                del records, columns, twin, arrow_batch
            counted = wh.query(f"SELECT count() FROM {TABLE}").rows[0][0]
            expected = rows * (batches + 1)
            if counted != expected:
                raise RuntimeError(f"{TABLE} holds {counted} rows, expected {expected}")
        finally:
            raw.close()
            wh.close()
    value = batches * rows / ours
    baseline = batches * rows / base
    return BenchResult(
        value=value,
        unit="rows/s",
        baseline=baseline,
        ratio=value / baseline,
        params={
            "batches": batches,
            "batch_rows": rows,
            "columns": len(schema),
            "columns_for_rows_per_s": round(batches * rows / converting),
            "chdb": chdb.__version__,
            "engine": chdb.engine_version,
        },
    )


__all__ = ["warehouse_insert"]
