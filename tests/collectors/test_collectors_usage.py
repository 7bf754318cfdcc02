"""Usage ingestion: validation with line numbers, the ledger, and the Kafka paths (real broker)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from collectors.base import ListSink, PublisherSink, build_collector, parse_collector_config
from collectors.publish import RecordPublisher
from collectors.usage import UsageFilesCollector, UsageKafkaCollector, UsageLimits, check_file, records_from_messages
from models.codec import RecordCodec
from models.records import DeadLetter, UsageRecord
from models.topics import DEAD_LETTERS, USAGE_RECORDS, Topic

NOW_MS = 1_795_000_000_000  # a fixed "now" so the plausibility window does not drift with the calendar
LIMITS = UsageLimits(now_ms=NOW_MS)
T0 = "2026-11-18T10:00:00Z"
T1 = "2026-11-18T10:05:00+00:00"

CSV = f"""id,account,service,start,end,bytes_up,bytes_down,duration_s,destination,event_type
u1,acc-1,internet,{T0},{T1},100,2000,300,,data
u2,acc-2,internet,1794996000000,1794996060000,5,6,,,
u3,acc-2,internet,{T1},{T0},1,1,,,
u4,acc-3,internet,{T0},{T1},-5,1,,,
u5,,internet,{T0},{T1},1,1,,,
u1,acc-1,internet,{T0},{T1},100,2000,300,,data
u6,acc-3,voice,{T0},{T1},0,0,60,+15551234567,voice
u7,acc-3,internet,{T0}
u8,acc-3,internet,{T0},{T1},NaN,1,,,
u9,acc-3,internet,2001-01-01T00:00:00Z,2001-01-01T00:01:00Z,1,1,,,
u10,acc-3,internet,{T0},2031-01-01T00:00:00Z,1,1,,,
u11,acc-3,internet,{T0},{T1},1000000000000001,1,,,
"""

EXPECTED_BAD = {
    4: "end is before start",
    5: "bytes_up: negative: -5",
    6: "missing account",
    7: "duplicate id 'u1' (first on line 2)",
    9: "4 fields where the header has 10",
    10: "bytes_up: not an integer: 'NaN'",
    11: "start is more than 400 days in the past",
    12: "end is more than 86400s in the future",
    13: "bytes_up: too large: 1000000000000001 > 1000000000000000",
}


def test_csv_bad_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "cdr-0001.csv"
    path.write_text(CSV)
    result = check_file(path, LIMITS)
    assert [r.id for r in result.records] == ["u1", "u2", "u6"]
    got = {d.offset: d.reason.split(": ", 1)[1] for d in result.dead_letters}
    assert got == EXPECTED_BAD
    letter = result.dead_letters[0]
    assert letter.topic == "file://cdr-0001.csv" and letter.stage == "usage-files"
    assert letter.payload.startswith("u3,acc-2") and letter.reason.startswith("line 4: ")
    u1 = result.records[0]
    start = int(datetime(2026, 11, 18, 10, tzinfo=UTC).timestamp() * 1000)
    assert (u1.start_ms, u1.end_ms, u1.bytes_up, u1.bytes_down, u1.duration_s) == (
        start,
        start + 300_000,
        100,
        2000,
        300,
    )
    assert result.records[2].destination == "+15551234567" and result.records[2].event_type == "voice"


def test_json_lines_file(tmp_path: Path) -> None:
    path = tmp_path / "acct.jsonl"
    lines = [
        {"id": "j1", "account": "a", "service": "s", "start": 1794996000000, "end": 1794996000500, "bytes_down": 7},
        "not json at all",
        [1, 2, 3],
        {"id": "j2", "account": "a", "service": "s", "start": T0, "end": T1, "bytes_up": 1.5},
        {"id": "j3", "account": "a", "service": "s", "start": T0, "end": T1, "bytes_up": True},
        {"id": "j4", "account": "a", "service": "s", "start": T0, "end": T1, "bytes_up": 2.0, "extra": "ignored"},
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    result = check_file(path, LIMITS)
    assert [r.id for r in result.records] == ["j1", "j4"]
    reasons = [d.reason for d in result.dead_letters]
    assert reasons[0].startswith("line 2: malformed JSON")
    assert reasons[1] == "line 3: a JSON line must be an object, not list"
    assert reasons[2] == "line 4: bytes_up: not an integer: 1.5"
    assert reasons[3] == "line 5: bytes_up: not an integer: True"


def test_csv_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("ident,acct\n1,2\n")
    result = check_file(path, LIMITS)
    assert result.records == [] and "CSV header lacks id, account, service, start, end" in result.dead_letters[0].reason


def test_directory_ingest_is_idempotent_by_ledger(tmp_path: Path) -> None:
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text(CSV)
    (incoming / "b.csv.part").write_text(CSV)  # still being written: ignored
    section = {
        "type": "usage_files",
        "directory": str(incoming),
        "min_age_s": 0,
        "max_age_days": 0,
        "max_future_s": 10**9,
    }
    sink = ListSink()
    coll: UsageFilesCollector = build_collector(parse_collector_config(section), sink)  # type: ignore[assignment]
    first = asyncio.run(coll.collect_once())
    assert sorted(r.id for r in first) == ["u1", "u10", "u2", "u6", "u9"]  # no age limits in this config
    assert coll.files_ingested == 1
    again = asyncio.run(coll.collect_once())
    assert again == [] and coll.files_skipped == 1
    # a restarted collector reads the ledger from disk: still nothing doubled
    coll2: UsageFilesCollector = build_collector(parse_collector_config(section), ListSink())  # type: ignore[assignment]
    assert asyncio.run(coll2.collect_once()) == [] and coll2.files_skipped == 1
    ledger = [json.loads(line) for line in (incoming / ".ossbss-ingested.jsonl").read_text().splitlines()]
    assert len(ledger) == 1 and ledger[0]["records"] == len(first) and ledger[0]["dead_letters"] > 0
    assert len(sink.records(USAGE_RECORDS)) == len(first)
    assert len(sink.records(DEAD_LETTERS)) == ledger[0]["dead_letters"]


def test_kafka_messages_to_records_pure() -> None:
    good = json.dumps({"id": "k1", "account": "a", "service": "s", "start": T0, "end": T1}).encode()
    records, letters = records_from_messages(
        [
            ("raw", 0, 10, good),
            ("raw", 0, 11, b"{"),
            ("raw", 1, 3, None),
            ("raw", 1, 4, b'"text"'),
            ("raw", 1, 5, b"x" * 300_000),
        ],
        LIMITS,
    )
    assert [r.id for r in records] == ["k1"] and records[0].source == "kafka:raw"
    assert [(d.partition, d.offset) for d in letters] == [(0, 11), (1, 3), (1, 4), (1, 5)]
    assert letters[0].id == "raw/0/11/usage-kafka"  # stable: a replay does not double the dead letter
    assert "oversized" in letters[3].reason


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None and message.value() is not None:
                    values.append(message.value())
    finally:
        consumer.close()
    return values


@pytest.mark.integration
def test_raw_usage_topic_is_ingested_and_committed(kafka_bootstrap: str, unique: str) -> None:
    raw_topic = f"test.usage.raw.{unique}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    now = int(time.time() * 1000)
    for i in range(50):
        value = {
            "id": f"{unique}-{i}",
            "account": f"acc-{i % 5}",
            "service": "internet",
            "start": now - 60_000,
            "end": now,
            "bytes_down": i,
        }
        producer.produce(raw_topic, json.dumps(value).encode())
    producer.produce(raw_topic, b"{broken")
    producer.produce(
        raw_topic,
        json.dumps(
            {"id": f"{unique}-neg", "account": "a", "service": "s", "start": now, "end": now, "bytes_up": -1}
        ).encode(),
    )
    producer.flush(10)
    out_topic = Topic(f"test.usage.records.{unique}", "account", "")
    letters_topic = Topic(f"test.dead.{unique}", "topic", "")

    class Redirect(PublisherSink):
        """Send each topic to a per-test name so the assertion reads only this test's records."""

        def emit(self, topic: Topic, records: list) -> None:  # type: ignore[override]
            super().emit(
                out_topic if topic == USAGE_RECORDS else letters_topic if topic == DEAD_LETTERS else topic, records
            )

    sink = Redirect(RecordPublisher(kafka_bootstrap))
    section = {"type": "usage_kafka", "topic": raw_topic, "group_id": f"ingest-{unique}"}
    coll: UsageKafkaCollector = build_collector(
        parse_collector_config(section), sink, kafka={"bootstrap.servers": kafka_bootstrap}
    )  # type: ignore[assignment]
    handled = 0
    deadline = time.monotonic() + 30
    while handled < 52 and time.monotonic() < deadline:
        handled += coll.consume_batch(timeout=1.0)
    coll.close()
    assert handled == 52
    records = [RecordCodec(UsageRecord).decode(v) for v in consume_all(kafka_bootstrap, out_topic.name, 50)]
    assert sorted(r.id for r in records) == sorted(f"{unique}-{i}" for i in range(50))
    letters = [RecordCodec(DeadLetter).decode(v) for v in consume_all(kafka_bootstrap, letters_topic.name, 2)]
    assert sorted(d.reason.split(":")[0] for d in letters) == ["bytes_up", "malformed JSON"]
    # offsets were committed after delivery: a new consumer in the group sees nothing left
    again: UsageKafkaCollector = build_collector(
        parse_collector_config(section), ListSink(), kafka={"bootstrap.servers": kafka_bootstrap}
    )  # type: ignore[assignment]
    assert sum(again.consume_batch(timeout=1.0) for _ in range(3)) == 0
    again.close()
