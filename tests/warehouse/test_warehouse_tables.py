"""Every table on the real engine: records in through columns_for + insert_columns, read back exactly."""

from __future__ import annotations

import doctest
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from models.records import (
    Alert,
    DeadLetter,
    FaultEvent,
    InterfaceRate,
    RatedUsage,
    TelemetrySample,
    UsageRecord,
)
from warehouse.base import BatchError, QueryError
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.rows import PipelineMetric, columns_for

# Two hours ago on an hour boundary: telemetry older than its TTL (7 days) would be dropped by the engine.
T0 = (int(time.time()) // 3600 - 2) * 3_600_000


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _insert(wh: ChdbWarehouse, table: str, records: list) -> int:
    return wh.insert_columns(table, columns_for(table, records))


def _sample(i: int, **extra: object) -> TelemetrySample:
    ts = T0 + i * 10_000
    return TelemetrySample(
        id=TelemetrySample.make_id("r1", 3, ts),
        device="r1",
        if_index=3,
        ts_ms=ts,
        if_name="ge-0/0/3",
        **extra,
    )


def test_telemetry_samples_round_trip_including_64bit_counters_and_nulls(wh: ChdbWarehouse) -> None:
    big = 2**64 - 1
    records = [
        _sample(0, in_octets=big, out_octets=0, oper_status=1, uptime_ticks=5, speed_bps=10**10),
        _sample(1, counter_bits=32),
    ]
    assert _insert(wh, "telemetry_samples", records) == 2
    rows = wh.query(
        "SELECT id, device, if_index, ts, in_octets, out_octets, in_errors, counter_bits, oper_status, "
        "speed_bps, source FROM telemetry_samples ORDER BY ts"
    ).rows
    assert rows[0] == ["r1/3/" + str(T0), "r1", 3, _at(T0), big, 0, None, 64, 1, 10**10, "sim"]
    assert rows[1][4] is None and rows[1][7] == 32


def test_fault_events_round_trip_with_varbinds(wh: ChdbWarehouse) -> None:
    event = FaultEvent(
        id="f1",
        device="r1",
        ts_ms=T0,
        kind="linkDown",
        trap_oid="1.3.6.1.6.3.1.1.5.3",
        if_index=7,
        varbinds={"1.3.6.1.2.1.2.2.1.1.7": "7"},
    )
    plain = FaultEvent(id="f2", device="r1", ts_ms=T0 + 1, kind="coldStart")
    _insert(wh, "fault_events", [event, plain])
    rows = wh.query("SELECT id, kind, if_index, varbinds, ts FROM fault_events ORDER BY id").rows
    assert rows == [
        ["f1", "linkDown", 7, {"1.3.6.1.2.1.2.2.1.1.7": "7"}, _at(T0)],
        ["f2", "coldStart", None, {}, _at(T0 + 1)],
    ]


def test_usage_records_round_trip(wh: ChdbWarehouse) -> None:
    record = UsageRecord(
        id="u1",
        account="acct-1",
        service="fiber-1g",
        start_ms=T0,
        end_ms=T0 + 60_000,
        bytes_up=10**15,
        bytes_down=123,
        duration_s=60,
        destination="203.0.113.9",
        source="ipdr",
    )
    _insert(wh, "usage_records", [record])
    row = wh.query(
        "SELECT id, account, service, start, end, bytes_up, bytes_down, duration_s, event_type FROM usage_records"
    ).rows[0]
    assert row == ["u1", "acct-1", "fiber-1g", _at(T0), _at(T0 + 60_000), 10**15, 123, 60, "data"]


def _rated(i: int, amount: str, version: int = 1) -> RatedUsage:
    return RatedUsage(
        id=f"u{i}",
        account=f"acct-{i % 3}",
        service="fiber-1g",
        start_ms=T0 + i,
        end_ms=T0 + i + 1000,
        quantity=Decimal("1.073741824"),
        unit="GB",
        amount=Decimal(amount),
        currency="EUR",
        plan="home-1g",
        rating_version=version,
        rated_at_ms=T0 + 5000,
    )


@pytest.mark.parametrize("version", [-1, 2**32, 2**40])
def test_a_version_its_column_cannot_hold_is_a_batch_error_naming_the_column(version: int) -> None:
    # The sink isolates a batch that raises BatchError down to the record and dead-letters it with this
    # reason; any other exception from building columns would fail the whole flush instead.
    with pytest.raises(BatchError, match=r"rated_usage\.rating_version cannot hold") as refused:
        columns_for("rated_usage", [_rated(1, "1.00"), _rated(2, "1.00", version=version)])
    assert refused.value.column == "rating_version"
    assert columns_for("rated_usage", [_rated(1, "1.00", version=2**32 - 1)])["rating_version"].tolist() == [2**32 - 1]


def test_rated_usage_money_is_exact(wh: ChdbWarehouse) -> None:
    amounts = ["0.000001", "999999999999.999999", "0.1", "0.2", "12.345678", "-3.000001"]
    _insert(wh, "rated_usage", [_rated(i, a) for i, a in enumerate(amounts)])
    rows = wh.query("SELECT id, amount, quantity, currency FROM rated_usage ORDER BY id").rows
    assert [r[1] for r in rows] == [Decimal(a) for a in amounts]
    assert all(r[2] == Decimal("1.073741824") and r[3] == "EUR" for r in rows)
    total = wh.query("SELECT sum(amount) FROM rated_usage").rows[0][0]
    # Exact where a float sum would be off: 0.1 + 0.2 and 1e12-scale amounts mixed with micro-units.
    assert total == sum(Decimal(a) for a in amounts)
    assert isinstance(total, Decimal)


def test_rated_usage_keeps_highest_rating_version(wh: ChdbWarehouse) -> None:
    _insert(wh, "rated_usage", [_rated(1, "10.00"), _rated(2, "20.00")])
    _insert(wh, "rated_usage", [_rated(1, "8.50", version=2)])  # same id, new version: not a retry
    assert wh.query("SELECT count() FROM rated_usage").rows == [[3]]
    _insert(wh, "rated_usage", [_rated(1, "10.00"), _rated(3, "1.00")])  # a stale replay of version 1 must not win
    rows = wh.query("SELECT id, amount, rating_version FROM rated_usage FINAL ORDER BY id").rows
    assert rows == [["u1", Decimal("8.500000"), 2], ["u2", Decimal("20.000000"), 1], ["u3", Decimal("1.000000"), 1]]
    by_argmax = wh.query(
        "SELECT sum(a) FROM (SELECT argMax(amount, rating_version) AS a FROM rated_usage GROUP BY id)"
    ).rows[0][0]
    assert by_argmax == Decimal("29.5")


def test_quantity_finer_than_nine_decimals_is_rounded_but_money_is_refused(wh: ChdbWarehouse) -> None:
    fine = RatedUsage(
        id="q",
        account="a",
        service="s",
        start_ms=T0,
        end_ms=T0,
        quantity=Decimal(1) / Decimal(3),
        unit="GB",
        amount=Decimal("1.00"),
        currency="EUR",
        plan="p",
    )
    _insert(wh, "rated_usage", [fine])
    assert wh.query("SELECT quantity FROM rated_usage").rows[0][0] == Decimal("0.333333333")
    lossy = RatedUsage(
        id="m",
        account="a",
        service="s",
        start_ms=T0,
        end_ms=T0,
        quantity=Decimal(1),
        unit="GB",
        amount=Decimal("0.0000001"),
        currency="EUR",
        plan="p",
    )
    with pytest.raises(BatchError) as caught:
        _insert(wh, "rated_usage", [lossy])
    assert caught.value.table == "rated_usage" and caught.value.column == "amount"


def _rate(minute: int, revision: int = 1, in_avg: float = 1000.0, device: str = "r1") -> InterfaceRate:
    start = T0 + minute * 60_000
    return InterfaceRate(
        id=InterfaceRate.make_id(device, 1, start),
        device=device,
        if_index=1,
        window_start_ms=start,
        if_name="xe-0/0/1",
        samples=6,
        in_bps_avg=in_avg,
        in_bps_max=in_avg * 2,
        in_bps_p95=in_avg * 1.5,
        out_bps_avg=in_avg / 2,
        in_util_pct_avg=None if minute % 2 else 10.0,
        in_errors=minute,
        speed_bps=10**9,
        revision=revision,
    )


def test_interface_rates_keep_highest_revision(wh: ChdbWarehouse) -> None:
    _insert(wh, "interface_rates_1m", [_rate(0), _rate(1)])
    _insert(wh, "interface_rates_1m", [_rate(1, revision=3, in_avg=5000.0)])
    _insert(wh, "interface_rates_1m", [_rate(1, revision=2, in_avg=4000.0)])
    rows = wh.query(
        "SELECT window_start, in_bps_avg, revision, in_util_pct_avg FROM interface_rates_1m FINAL ORDER BY window_start"
    ).rows
    assert rows == [[_at(T0), 1000.0, 1, 10.0], [_at(T0 + 60_000), 5000.0, 3, None]]
    inserted = wh.query("SELECT count() FROM interface_rates_1m WHERE inserted_at > now64() - INTERVAL 1 HOUR")
    assert inserted.rows[0][0] >= 2  # inserted_at is filled by the table's default


def test_alerts_dead_letters_and_metrics_round_trip(wh: ChdbWarehouse) -> None:
    alert = Alert(
        id="a1",
        fingerprint="fp",
        name="LinkDown",
        status="firing",
        severity="major",
        device="r1",
        if_index=2,
        summary="down",
        starts_ms=T0,
        updated_ms=T0,
        labels={"site": "ams"},
    )
    resolved = Alert(
        id="a2",
        fingerprint="fp",
        name="LinkDown",
        status="resolved",
        starts_ms=T0,
        ends_ms=T0 + 60_000,
        updated_ms=T0 + 60_000,
    )
    _insert(wh, "alerts", [alert, resolved])
    current = wh.query("SELECT fingerprint, argMax(status, updated), max(ends) FROM alerts GROUP BY fingerprint")
    assert current.rows == [["fp", "resolved", _at(T0 + 60_000)]]
    letter = DeadLetter(
        id="dl1",
        topic="usage.records",
        partition=2,
        offset=41,
        stage="decode",
        reason="malformed JSON",
        payload="eyJ=",
        payload_encoding="base64",
        ts_ms=T0,
    )
    _insert(wh, "dead_letters", [letter])
    rows = wh.query("SELECT topic, partition, offset, stage, reason, payload_encoding FROM dead_letters").rows
    assert rows == [["usage.records", 2, 41, "decode", "malformed JSON", "base64"]]
    metric = PipelineMetric(
        ts_ms=T0,
        worker="w1",
        stage="sink",
        metric="rows_inserted",
        value=42.5,
        labels={"table": "telemetry_samples"},
    )
    _insert(wh, "pipeline_metrics", [metric])
    assert wh.query("SELECT metric, value, labels FROM pipeline_metrics").rows == [
        ["rows_inserted", 42.5, {"table": "telemetry_samples"}]
    ]


def test_replayed_batch_collapses_to_unique_ids(wh: ChdbWarehouse) -> None:
    batch = [_sample(i, in_octets=i) for i in range(500)]
    _insert(wh, "telemetry_samples", batch)
    # A retry of the same batch is dropped at insert time (deduplication token), even without FINAL.
    _insert(wh, "telemetry_samples", batch)
    assert wh.query("SELECT count() FROM telemetry_samples").rows == [[500]]
    # A replay after a crash cut differently overlaps what is stored; FINAL collapses it by id.
    _insert(wh, "telemetry_samples", [_sample(i, in_octets=i) for i in range(250, 750)])
    final = wh.query("SELECT count(), uniqExact(id) FROM telemetry_samples FINAL").rows[0]
    assert final == [750, 750]
    wh.execute("OPTIMIZE TABLE telemetry_samples FINAL")
    assert wh.query("SELECT count() FROM telemetry_samples").rows[0][0] == 750


def test_duplicates_within_a_batch_collapse_under_final(wh: ChdbWarehouse) -> None:
    # Inserts skip the engine's collapse of a block (optimize_on_insert = 0, warehouse.columnar): a record
    # twice in one batch is two rows until a merge, and one for every exact read (FINAL) at once.
    wh.insert_columns("rated_usage", columns_for("rated_usage", [_rated(1, "1.50"), _rated(1, "1.50"), _rated(2, "2")]))
    assert wh.query("SELECT count() FROM rated_usage").rows == [[3]]
    assert wh.query("SELECT count(), sum(amount) FROM rated_usage FINAL").rows == [[2, Decimal("3.5")]]
    wh.execute("OPTIMIZE TABLE rated_usage FINAL")
    assert wh.query("SELECT count() FROM rated_usage").rows == [[2]]


def test_columns_for_refuses_the_wrong_record_type() -> None:
    with pytest.raises(TypeError, match="TelemetrySample"):
        columns_for("telemetry_samples", [UsageRecord(id="u", account="a", service="s", start_ms=0, end_ms=0)])
    with pytest.raises(ValueError, match="interface_rates_5m"):
        columns_for("interface_rates_5m", [])


def test_insert_errors_name_table_and_column(wh: ChdbWarehouse) -> None:
    with pytest.raises(BatchError) as caught:
        wh.insert_columns("usage_records", {"id": ["x"], "nope": [1]})
    assert caught.value.column == "nope"
    with pytest.raises(BatchError, match="unequal"):
        wh.insert_columns("usage_records", {"id": ["x", "y"], "account": ["a"]})
    with pytest.raises(BatchError, match="float"):
        wh.insert_columns("rated_usage", {"id": ["x"], "amount": [0.1]})
    with pytest.raises(QueryError, match="does not exist"):
        wh.insert_columns("no_such_table", {"id": ["x"]})
    assert wh.insert_columns("usage_records", {}) == 0
    assert wh.insert_columns("usage_records", {"id": []}) == 0


def test_concurrent_inserts_and_reads_from_threads(wh: ChdbWarehouse) -> None:
    def insert(worker: int) -> None:
        for batch in range(5):
            records = [
                UsageRecord(id=f"w{worker}-{batch}-{i}", account="a", service="s", start_ms=T0, end_ms=T0)
                for i in range(200)
            ]
            _insert(wh, "usage_records", records)
            wh.query("SELECT count() FROM usage_records", readonly=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(insert, range(4)))
    assert wh.query("SELECT count(), uniqExact(id) FROM usage_records").rows == [[4000, 4000]]


def test_rows_docstring_example_runs() -> None:
    import warehouse.rows

    assert doctest.testmod(warehouse.rows).failed == 0
