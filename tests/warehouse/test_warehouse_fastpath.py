"""The sink's columnar fast path (warehouse/fastpath.py) against its object path, on the real engine.

The same messages go through a sink with its fast path and through one without it, each into its own
database; the rows in ClickHouse and the dead letters (ids and reasons) must be identical. Kafka is not
needed: the sink's consumer and producer are replaced by stand-ins that record commits and dead letters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from confluent_kafka import Message

from collectors.simulate import DeviceSimulator
from models.codec import MAX_RECORD_BYTES, decode_batch, encode, encode_many
from models.records import DeadLetter, InterfaceRate, RatedUsage, Record, TelemetrySample, UsageRecord
from models.topics import INTERFACE_RATES_1M, TELEMETRY_SAMPLES, USAGE_RATED, USAGE_RECORDS
from ossbss.config import SinkConfig
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.columnar import to_arrow_table
from warehouse.fastpath import fast_columns_for
from warehouse.migrate import apply_migrations
from warehouse.rows import columns_for
from warehouse.sink import DEFAULT_ROUTES, WarehouseSink

NOW = 1_795_000_000_000


def rated(n: int, **overrides: Any) -> RatedUsage:
    fields: dict[str, Any] = {
        "id": f"r-{n}",
        "account": f"ACC-{n % 7:05d}",
        "service": "data",
        "start_ms": NOW - 60_000,
        "end_ms": NOW,
        "quantity": Decimal("1.5"),
        "unit": "GB",
        "amount": Decimal("0.750000"),
        "currency": "EUR",
        "plan": "data-flat",
        "rated_at_ms": NOW + 5,
        "breakdown": '{"lines":[{"charge":"per_unit","amount":"0.750000"}]}',
    }
    fields.update(overrides)
    return RatedUsage(**fields)


# Exact-money edge cases the fast path must store exactly as the object path does.
EDGE_CASES = [
    rated(1, quantity=Decimal("0.100000001"), amount=Decimal("0.000001")),  # the finest each column keeps
    rated(2, quantity=Decimal("0"), amount=Decimal("0.000000")),  # zero, with and without decimals
    rated(3, quantity=Decimal("12.5"), amount=Decimal("-3.210000")),  # a credit
    rated(4, quantity=Decimal("-0.5"), amount=Decimal("-0.000001")),  # negative quantity (a correction)
    rated(5, quantity=Decimal("99999999999999999999999999999.999999999"), amount=Decimal("999999999999.999999")),
    rated(6, quantity=Decimal("-99999999999999999999999999999.999999999"), amount=Decimal("-999999999999.999999")),
    rated(7, quantity=Decimal("123456789.123456789"), amount=Decimal("42")),  # integral amount
    rated(8, plan_version=4_294_967_295, rating_version=3, rated_at_ms=0, breakdown=""),
    rated(9, unit="", plan="", breakdown='quotes " and \\ and \u00e9\u4e2d \U0001f600 and \n newline'),
    rated(10, amount=Decimal("0.1"), quantity=Decimal("7")),
]


class Committed:
    """Stands in for the sink's consumer: records the offsets committed."""

    def __init__(self) -> None:
        self.offsets: list[tuple[str, int, int]] = []

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        self.offsets.extend((tp.topic, tp.partition, tp.offset) for tp in offsets)

    def close(self) -> None:
        pass


class DeadLetters:
    """Stands in for the sink's producer: keeps the dead letters produced."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.letters.append(msgspec.json.decode(value, type=DeadLetter))

    def flush(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture
def databases(chdb_dir: Path) -> Iterator[tuple[ChdbWarehouse, ChdbWarehouse]]:
    """Two migrated databases: one for the fast path, one for the object path."""
    pair = [ChdbWarehouse(chdb_dir, database=f"t_{uuid.uuid4().hex[:10]}") for _ in range(2)]
    for wh in pair:
        apply_migrations(wh)
    yield pair[0], pair[1]
    for wh in pair:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.database} SYNC")
        wh.close()


def make_sink(wh: ChdbWarehouse, *, fast: bool) -> WarehouseSink:
    # Nothing listens on port 1: the real client objects are replaced before any use.
    sink = WarehouseSink({"bootstrap.servers": "127.0.0.1:1"}, wh, SinkConfig(metrics_port=0), DEFAULT_ROUTES)
    sink.consumer = Committed()  # type: ignore[assignment]
    sink.producer = DeadLetters()  # type: ignore[assignment]
    if not fast:
        sink.fast = {}
    return sink


def messages(topic: str, values: Sequence[bytes | None]) -> list[Message]:
    return [Message(topic=topic, value=v, partition=i % 3, offset=100 + i) for i, v in enumerate(values)]


def table_rows(wh: ChdbWarehouse, table: str) -> list[list[Any]]:
    columns = [c for c in wh.table_columns(table) if c != "inserted_at"]
    return wh.query(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM {table} ORDER BY id").rows


def both_ways(
    databases: tuple[ChdbWarehouse, ChdbWarehouse], topic: str, values: Sequence[bytes | None], table: str
) -> tuple[list[list[Any]], list[tuple[str, str]], WarehouseSink]:
    """Flush ``values`` through a fast and an object sink; assert the same rows, dead letters and commits."""
    results = []
    sinks = []
    for wh, fast in zip(databases, (True, False), strict=True):
        sink = make_sink(wh, fast=fast)
        sink.flush(messages(topic, values))
        letters = sorted((dl.id, dl.reason) for dl in sink.producer.letters)  # type: ignore[attr-defined]
        results.append((table_rows(wh, table), letters, sink.consumer.offsets, dict(sink.stats.rows)))  # type: ignore[attr-defined]
        sinks.append(sink)
    fast_result, object_result = results
    assert fast_result == object_result
    assert sinks[0].stats.skipped_invalid == sinks[1].stats.skipped_invalid
    return fast_result[0], fast_result[1], sinks[0]


def fast_table_as_object_table(
    wh: ChdbWarehouse, record_type: type[Record], table: str, values: Sequence[bytes | None]
) -> pa.Table:
    """The fast path's Arrow table of ``values`` (which it must take), asserted equal to the object path's."""
    fast = fast_columns_for(record_type, table)
    assert fast is not None
    got = fast.decode(values)
    assert got is not None
    columns, origin = got
    records, kept, failures = decode_batch(record_type, values)
    assert failures == [] and origin == kept
    expected_columns = columns_for(table, records)
    assert list(columns) == list(expected_columns)
    schema = wh.table_columns(table)
    arrow = to_arrow_table(table, columns, schema)
    expected = to_arrow_table(table, expected_columns, schema)
    assert arrow.schema.equals(expected.schema) and arrow.equals(expected)
    return arrow


def test_rated_batched_and_single_messages_land_identically(
    databases: tuple[ChdbWarehouse, ChdbWarehouse],
) -> None:
    records = EDGE_CASES + [rated(n) for n in range(100, 400)]
    values: list[bytes | None] = [encode_many(records[:5]), encode(records[5]), encode_many(records[6:]), b"[]"]
    fast = fast_columns_for(RatedUsage, "rated_usage")
    assert fast is not None and fast.decode(values) is not None  # the fast path does take this batch
    rows, letters, _ = both_ways(databases, USAGE_RATED.name, values, "rated_usage")
    assert letters == []
    assert len(rows) == len(records)
    by_id = {row[0]: row for row in rows}
    # Exact money, checked against the records themselves (not only against the other path).
    for record in records:
        row = by_id[record.id]
        assert row[5] == record.quantity and row[7] == record.amount, record.id
    assert by_id["r-9"][13] == EDGE_CASES[8].breakdown


def test_fast_columns_equal_object_columns_in_arrow(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    wh = databases[0]
    for record_type, table, records in (
        (RatedUsage, "rated_usage", EDGE_CASES),
        (
            UsageRecord,
            "usage_records",
            [
                UsageRecord(id="u1", account="a", service="data", start_ms=1, end_ms=1),
                UsageRecord(id="u2", account="b", service="voice", start_ms=1, end_ms=9, duration_s=8),
                UsageRecord(
                    id="u3",
                    account="c",
                    service="data",
                    start_ms=0,
                    end_ms=5,
                    bytes_up=10**15,
                    bytes_down=7,
                    destination="+31",
                    event_type="voice",
                    source="cdr",
                ),
            ],
        ),
    ):
        values = [encode_many(records[:2]), encode(records[2])]
        assert fast_table_as_object_table(wh, record_type, table, values).num_rows == 3


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b'"amount":"0.1234567"', id="amount with 7 decimals (engine refuses: dead letter)"),
        pytest.param(b'"amount":"1234567890123"', id="amount over 12 integer digits (dead letter)"),
        pytest.param(b'"amount":"1e3"', id="exponent notation"),
        pytest.param(b'"amount":"NaN"', id="NaN"),
        pytest.param(b'"amount":1.25', id="amount as a JSON number"),
        pytest.param(b'"amount":"ten"', id="not a number (decode failure)"),
        pytest.param(b'"amount":null', id="null amount"),
        pytest.param(b'"quantity":"0.1234567891"', id="quantity with 10 decimals (rounded by the object path)"),
        pytest.param(b'"quantity":"00000000000000000000000000000001.5"', id="leading zeros"),
        pytest.param(b'"quantity":"1E-9"', id="exponent as str(Decimal) writes tiny values"),
        pytest.param(b'"amount":"1.1000000"', id="amount with a trailing zero beyond 6 decimals"),
        pytest.param(b'"currency":"EURO"', id="currency too long"),
        pytest.param(b'"v":2', id="future schema version"),
        pytest.param(b'"start_ms":-1', id="negative timestamp"),
    ],
)
def test_bad_or_unusual_rated_values_behave_as_before(
    databases: tuple[ChdbWarehouse, ChdbWarehouse], bad: bytes
) -> None:
    good = [rated(n) for n in range(20)]
    key = bad.split(b":")[0]
    odd = encode(rated(99))[:-1] + b"," + bad + b"}" if key == b'"v"' else _replace_field(rated(99), bad)
    values: list[bytes | None] = [encode_many(good[:10]), b"[" + encode(good[10]) + b"," + odd + b"]", encode(good[11])]
    fast = fast_columns_for(RatedUsage, "rated_usage")
    assert fast is not None and fast.decode(values) is None  # the object path decides
    both_ways(databases, USAGE_RATED.name, values, "rated_usage")


def _replace_field(record: Record, field: bytes) -> bytes:
    raw = msgspec.json.decode(encode(record))
    name = field.split(b":")[0].strip(b'"').decode()
    raw[name] = msgspec.json.decode(field.split(b":", 1)[1])
    return msgspec.json.encode(raw)


def test_refused_amount_dead_letters_with_its_reason(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    odd = _replace_field(rated(99), b'"amount":"0.1234567"')
    rows, letters, sink = both_ways(
        databases, USAGE_RATED.name, [encode_many([rated(1), rated(2)]), odd], "rated_usage"
    )
    assert [row[0] for row in rows] == ["r-1", "r-2"]
    assert len(letters) == 1
    assert letters[0][0] == f"{USAGE_RATED.name}/1/101/sink"
    assert letters[0][1].startswith("warehouse refused the row for rated_usage: rated_usage.amount")
    assert sink.consumer.offsets  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="null message"),
        pytest.param(b'{"id":"x"', id="truncated JSON"),
        pytest.param(b"[" + b",".join([encode(rated(7))] * 2) + b",{}]", id="bad element in an array"),
        pytest.param(_replace_field(rated(8), b'"breakdown":"' + b"x" * MAX_RECORD_BYTES + b'"'), id="oversized"),
        pytest.param(
            encode_many([rated(9, breakdown="y" * (MAX_RECORD_BYTES + 10)), rated(10)]), id="oversized element"
        ),
    ],
)
def test_refused_messages_dead_letter_as_before(
    databases: tuple[ChdbWarehouse, ChdbWarehouse], value: bytes | None
) -> None:
    values = [encode_many([rated(1), rated(2)]), value]
    fast = fast_columns_for(RatedUsage, "rated_usage")
    assert fast is not None and fast.decode(values) is None
    _, letters, _ = both_ways(databases, USAGE_RATED.name, values, "rated_usage")
    assert letters


def test_rating_version_out_of_uint32_is_left_to_the_object_path(
    databases: tuple[ChdbWarehouse, ChdbWarehouse],
) -> None:
    # The fast path refuses the batch; the object path's columns_for raises BatchError for the value,
    # and the sink isolates that record and dead-letters it naming the column; the other row lands.
    values = [encode_many([rated(1)]), _replace_field(rated(11), b'"rating_version":-1')]
    fast = fast_columns_for(RatedUsage, "rated_usage")
    assert fast is not None and fast.decode(values) is None
    rows, letters, _ = both_ways(databases, USAGE_RATED.name, values, "rated_usage")
    assert len(rows) == 1
    assert len(letters) == 1 and "rated_usage.rating_version cannot hold" in letters[0][1]


def test_usage_records_fast_path_and_skips(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    usage = [
        UsageRecord(id=f"u{n}", account=f"a{n}", service="data", start_ms=n, end_ms=n + 5, bytes_up=n)
        for n in range(50)
    ]
    good = [encode_many(usage[:25]), encode_many(usage[25:])]
    fast = fast_columns_for(UsageRecord, "usage_records")
    assert fast is not None and fast.decode(good) is not None
    rows, letters, sink = both_ways(databases, USAGE_RECORDS.name, good, "usage_records")
    assert len(rows) == 50 and letters == []
    # A record ending before it starts: the rating stage dead-letters it; the sink skips and counts it.
    backwards = encode(usage[3]).replace(b'"end_ms":8', b'"end_ms":2')
    assert fast.decode([*good, backwards]) is None
    for wh in databases:
        wh.execute("TRUNCATE TABLE usage_records")
    _, letters, sink = both_ways(databases, USAGE_RECORDS.name, [*good, backwards], "usage_records")
    assert letters == [] and sink.stats.skipped_invalid == 1


# -- telemetry.samples -> telemetry_samples ---------------------------------------------------------------


def polls(devices: int, *, counter_bits: int = 64, at: int = NOW) -> list[bytes | None]:
    """One message per device poll (a JSON array of its 48 samples), as collectors/publish.py sends them."""
    offset = 2**32 - 1000 if counter_bits == 32 else 0
    sim = DeviceSimulator(devices, 48, 100_000_000, 40_000_000, 10**9, at - 600_000, counter_bits, offset)
    samples = sim.poll(at)
    return [encode_many([s for s in samples if s.device == sim.device_name(d)]) for d in range(devices)]


def sample(n: int, **overrides: Any) -> TelemetrySample:
    fields: dict[str, Any] = {"id": f"s-{n}", "device": "edge-router", "if_index": n, "ts_ms": NOW}
    fields.update(overrides)
    return TelemetrySample(**fields)


_MAX64 = 2**64 - 1
# Samples the fast path must store exactly as the object path does.
TELEMETRY_EDGE_CASES = [
    sample(1),  # every counter null, if_name empty, the defaults
    sample(2, in_octets=_MAX64, out_octets=0, in_errors=_MAX64, speed_bps=_MAX64, uptime_ticks=_MAX64),
    sample(3, if_name="", in_octets=4_294_967_295, out_octets=17, counter_bits=32, uptime_ticks=0),
    sample(4, if_index=0, ts_ms=NOW - 86_400_000, oper_status=7, speed_bps=400 * 10**9, source=""),
    sample(5, if_index=2**32 - 1, ts_ms=32503680000000, oper_status=1, counter_bits=64, in_discards=None),
    sample(6, if_name='xe-1/2/3.100 \u00e9 " \\', in_ucast_pkts=5, out_nucast_pkts=6, out_discards=7),
    sample(7, in_nucast_pkts=1, out_ucast_pkts=2, out_errors=3, in_discards=4, speed_bps=0, source="gnmi"),
]


def test_telemetry_fast_columns_equal_object_columns_in_arrow(
    databases: tuple[ChdbWarehouse, ChdbWarehouse],
) -> None:
    # ts 0 only here: on the engine, its TTL drops such a row at a time of the engine's choosing.
    edge_cases = [*TELEMETRY_EDGE_CASES, sample(8, ts_ms=0, counter_bits=32, oper_status=2)]
    values = [*polls(3), *polls(2, counter_bits=32), encode_many(edge_cases[:4])]
    values += [encode(r) for r in edge_cases[4:]]
    arrow = fast_table_as_object_table(databases[0], TelemetrySample, "telemetry_samples", values)
    # Null stays null, column by column (not 0), and the widest values are kept.
    edge = arrow.slice(arrow.num_rows - len(edge_cases)).to_pylist()
    for row, record in zip(edge, edge_cases, strict=True):
        for field in ("in_octets", "out_octets", "in_discards", "speed_bps", "oper_status", "uptime_ticks"):
            assert row[field] == getattr(record, field), (record.id, field)
        assert (row["if_index"], row["counter_bits"], row["if_name"]) == (
            record.if_index,
            record.counter_bits,
            record.if_name,
        )


def test_telemetry_polls_land_identically(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    values = [*polls(4), *polls(2, counter_bits=32, at=NOW + 10_000), encode_many(TELEMETRY_EDGE_CASES)]
    fast = fast_columns_for(TelemetrySample, "telemetry_samples")
    assert fast is not None and fast.decode(values) is not None  # the fast path does take this batch
    rows, letters, sink = both_ways(databases, TELEMETRY_SAMPLES.name, values, "telemetry_samples")
    assert letters == [] and sink.stats.skipped_invalid == 0
    assert len(rows) == 6 * 48 + len(TELEMETRY_EDGE_CASES)
    by_id = {row[0]: row for row in rows}
    assert by_id["s-1"][5:17] == [None] * 12 and by_id["s-1"][18] is None  # null counters and uptime
    assert by_id["s-2"][5] == _MAX64 and by_id["s-2"][15] == _MAX64


def _telemetry_field(field: bytes) -> bytes:
    return _replace_field(sample(99, in_octets=1, speed_bps=10**9), field)


@pytest.mark.parametrize(
    ("bad", "outcome"),
    [
        pytest.param(_telemetry_field(b'"in_octets":18446744073709551616'), "skipped", id="counter 2**64"),
        pytest.param(_telemetry_field(b'"out_discards":18446744073709551616'), "skipped", id="last counter 2**64"),
        pytest.param(_telemetry_field(b'"in_errors":1180591620717411303424'), "skipped", id="counter 2**70"),
        pytest.param(_telemetry_field(b'"in_octets":-1'), "skipped", id="negative counter"),
        pytest.param(_telemetry_field(b'"oper_status":8'), "skipped", id="oper_status out of range"),
        pytest.param(_telemetry_field(b'"counter_bits":16'), "skipped", id="16-bit counters"),
        pytest.param(_telemetry_field(b'"device":""'), "skipped", id="empty device"),
        pytest.param(_telemetry_field(b'"v":2'), "skipped", id="future schema version"),
        pytest.param(_telemetry_field(b'"if_name":"' + b"x" * MAX_RECORD_BYTES + b'"'), "skipped", id="oversized"),
        pytest.param(b'[{"id":"s-99","device":"d","if_index":1,"ts_ms":1}', "skipped", id="truncated JSON"),
        pytest.param(None, "skipped", id="null message"),
        pytest.param(_telemetry_field(b'"if_index":4294967296'), "if_index", id="if_index beyond UInt32"),
        pytest.param(_telemetry_field(b'"speed_bps":18446744073709551616'), "speed_bps", id="speed_bps 2**64"),
        pytest.param(_telemetry_field(b'"uptime_ticks":18446744073709551616'), "uptime_ticks", id="uptime 2**64"),
    ],
)
def test_bad_telemetry_is_left_to_the_object_path(
    databases: tuple[ChdbWarehouse, ChdbWarehouse], bad: bytes | None, outcome: str
) -> None:
    # Inside a poll (a bad element among good ones) and as a message of its own; a null or truncated
    # message spoils the whole poll it is in.
    good = polls(2)
    inner = b"[" + encode(sample(50)) + b"," + bad + b"]" if bad is not None else None
    whole = bad is None or bad.startswith(b"[")
    for odd in (inner, bad):
        values = [*good, odd]
        fast = fast_columns_for(TelemetrySample, "telemetry_samples")
        assert fast is not None and fast.decode(values) is None  # the object path decides
        for wh in databases:
            wh.execute("TRUNCATE TABLE telemetry_samples")
        rows, letters, sink = both_ways(databases, TELEMETRY_SAMPLES.name, values, "telemetry_samples")
        ids = {row[0] for row in rows}
        assert len(ids) == len(rows) and ids >= {
            f"sim-router-{d:04d}/{i}/{NOW}" for d in range(2) for i in range(1, 49)
        }
        assert ("s-50" in ids) == (odd is inner and not whole)
        if outcome == "skipped":
            # The interface_rates stage dead-letters these samples; the sink skips and counts them.
            assert letters == [] and sink.stats.skipped_invalid == 1 and "s-99" not in ids
        else:
            # The object path's columns_for (or the Arrow conversion) refuses the value: a dead letter
            # naming the column, and the rest of the batch lands.
            assert len(letters) == 1 and f"telemetry_samples.{outcome}" in letters[0][1]
            assert "s-99" not in ids and len(rows) == 2 * 48 + (odd is inner and not whole)


def test_oversized_telemetry_element_is_left_to_the_object_path(
    databases: tuple[ChdbWarehouse, ChdbWarehouse],
) -> None:
    values = [*polls(1), encode_many([sample(1, if_name="y" * (MAX_RECORD_BYTES + 10)), sample(2)])]
    fast = fast_columns_for(TelemetrySample, "telemetry_samples")
    assert fast is not None and fast.decode(values) is None
    rows, letters, sink = both_ways(databases, TELEMETRY_SAMPLES.name, values, "telemetry_samples")
    assert letters == [] and sink.stats.skipped_invalid == 1
    ids = [row[0] for row in rows]
    assert len(ids) == 48 + 1 and "s-2" in ids and "s-1" not in ids


# -- interface.rates.1m -> interface_rates_1m ------------------------------------------------------------


def window(n: int, **overrides: Any) -> InterfaceRate:
    start = NOW - NOW % 60_000 - 60_000 * (n % 3)
    fields: dict[str, Any] = {
        "id": InterfaceRate.make_id("edge-router", n, start),
        "device": "edge-router",
        "if_index": n,
        "window_start_ms": start,
        "if_name": f"ge-0/0/{n}",
        "samples": 6,
        "in_bps_avg": 1.5e6 + n,
        "in_bps_max": 2.25e6,
        "in_bps_p95": 2.2e6 / 3,
        "out_bps_avg": 0.1,
        "out_bps_max": 1e-300,
        "out_bps_p95": 123456789.125,
        "in_util_pct_avg": 0.15,
        "out_util_pct_avg": 1e-5,
        "in_errors": n,
        "speed_bps": 10**9,
        "in_pps_avg": 12.5,
        "out_pps_avg": 0.0,
        "oper_status_changes": 1,
        "oper_status": 1,
        "revision": 1 + n % 2,
    }
    fields.update(overrides)
    return InterfaceRate(**fields)


# Windows the fast path must store exactly as the object path does.
WINDOW_EDGE_CASES = [
    window(1),
    window(2, in_util_pct_avg=None, out_util_pct_avg=None, speed_bps=None, oper_status=None, if_name=""),
    window(3, if_index=2**32 - 1, samples=2**32 - 1, oper_status_changes=2**32 - 1, revision=2**32 - 1),
    window(4, in_errors=_MAX64, out_errors=0, in_discards=_MAX64, out_discards=7, speed_bps=_MAX64),
    window(5, if_index=0, window_start_ms=0, in_bps_avg=0.0, in_bps_max=1.7976931348623157e308),
]


def test_window_fast_columns_equal_object_columns_in_arrow(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    values = [encode_many(WINDOW_EDGE_CASES[:3]), *(encode(w) for w in WINDOW_EDGE_CASES[3:])]
    arrow = fast_table_as_object_table(databases[0], InterfaceRate, "interface_rates_1m", values)
    for row, record in zip(arrow.to_pylist(), WINDOW_EDGE_CASES, strict=True):
        for field in ("if_index", "samples", "in_errors", "in_discards", "speed_bps", "revision", "in_bps_max"):
            assert row[field] == getattr(record, field), (record.id, field)
        assert row["in_util_pct_avg"] == record.in_util_pct_avg and row["oper_status"] == record.oper_status


def test_windows_land_identically(databases: tuple[ChdbWarehouse, ChdbWarehouse]) -> None:
    values = [encode_many([window(n) for n in range(10, 40)]), encode_many(WINDOW_EDGE_CASES)]
    fast = fast_columns_for(InterfaceRate, "interface_rates_1m")
    assert fast is not None and fast.decode(values) is not None  # the fast path does take this batch
    rows, letters, _ = both_ways(databases, INTERFACE_RATES_1M.name, values, "interface_rates_1m")
    assert letters == [] and len(rows) == 30 + len(WINDOW_EDGE_CASES)


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        pytest.param(b'"if_index":4294967296', "interface_rates_1m.if_index cannot hold", id="if_index past UInt32"),
        pytest.param(b'"revision":4294967296', "interface_rates_1m.revision cannot hold", id="revision past UInt32"),
        pytest.param(b'"in_errors":-1', "Expected `int` >= 0 - at `$.in_errors`", id="negative count"),
        pytest.param(b'"in_bps_avg":"fast"', "Expected `float`, got `str`", id="text for a float"),
        pytest.param(b'"device":""', "Expected `str` of length >= 1 - at `$.device`", id="empty device"),
    ],
)
def test_odd_windows_are_left_to_the_object_path(
    databases: tuple[ChdbWarehouse, ChdbWarehouse], field: bytes, reason: str
) -> None:
    odd = _replace_field(window(99), field)
    values = [encode_many([window(1), window(2)]), odd]
    fast = fast_columns_for(InterfaceRate, "interface_rates_1m")
    assert fast is not None and fast.decode(values) is None  # the object path decides
    rows, letters, _ = both_ways(databases, INTERFACE_RATES_1M.name, values, "interface_rates_1m")
    assert [row[0] for row in rows] == [window(1).id, window(2).id]
    # A dead letter naming the field, of the odd message (topic/partition/offset); the rest lands.
    assert len(letters) == 1 and letters[0][0] == f"{INTERFACE_RATES_1M.name}/1/101/sink" and reason in letters[0][1]
