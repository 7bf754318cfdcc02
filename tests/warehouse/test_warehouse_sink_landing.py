"""The sink's run loop on the real embedded engine: each batch lands (insert, dead letters, commit) on a
thread of its own while the next one is gathered. Batches commit in order, never before their rows are
in ClickHouse; while the warehouse is unavailable the partitions are paused and the membership kept
alive, and nothing is lost; an error while landing stops the sink with that error.

The consumer and the producer are stand-ins (a finite backlog, a record of pauses and commits); the
warehouse is the real engine, wrapped to count rows and to fail on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Message, TopicPartition

from collectors.simulate import DeviceSimulator
from models.codec import encode_many
from models.topics import TELEMETRY_SAMPLES
from ossbss.config import SinkConfig
from warehouse.base import WarehouseUnavailable
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.sink import DEFAULT_ROUTES, WarehouseSink

TOPIC = TELEMETRY_SAMPLES.name
PARTITIONS = 3


def backlog(polls: int = 6, devices: int = 30) -> list[Message]:
    """Device polls as the collectors send them: one JSON array per device poll, spread over partitions."""
    start = int(time.time() * 1000) - 600_000  # recent: raw samples older than the table's TTL are dropped
    sim = DeviceSimulator(devices, 8, 100_000_000, 40_000_000, 10**9, start)
    out: list[Message] = []
    offsets = [0] * PARTITIONS
    for k in range(polls):
        samples = sim.poll(start + k * 10_000)
        for d in range(devices):
            p = d % PARTITIONS
            value = encode_many(samples[d * 8 : (d + 1) * 8])
            out.append(Message(topic=TOPIC, value=value, partition=p, offset=offsets[p]))
            offsets[p] += 1
    return out


class Log:
    """What happened, in order, across the sink's two threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []

    def add(self, kind: str, what: Any) -> None:
        with self.lock:
            self.events.append((kind, what))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [what for k, what in self.events if k == kind]


class Backlog:
    """Stands in for the consumer: hands out a finite backlog, a few messages a call, nothing from a paused
    partition; records pauses, resumes and commits."""

    def __init__(self, messages: list[Message], log: Log) -> None:
        self.pending = list(messages)
        self.log = log
        self.paused: set[int] = set()
        self.lock = threading.Lock()

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        if on_assign is not None:
            on_assign(self, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        with self.lock:
            got = [m for m in self.pending if m.partition() not in self.paused][: min(num_messages, 7)]
            for m in got:
                self.pending.remove(m)
        if not got:
            time.sleep(min(max(timeout, 0), 0.02))
        return got

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in partitions}
        self.log.add("pause", len(partitions))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}
        self.log.add("resume", len(partitions))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.log.add("commit", {(tp.partition): tp.offset for tp in offsets})

    def close(self) -> None:
        pass


class NoDeadLetters:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no dead letter expected")

    def flush(self, timeout: float = 0) -> int:
        return 0


class Warehouse:
    """The real engine, counting the rows inserted, and failing the first ``unavailable`` inserts as an
    unreachable warehouse would (or every insert with ``broken``)."""

    def __init__(self, real: ChdbWarehouse, log: Log, unavailable: int = 0, broken: Exception | None = None) -> None:
        self.real = real
        self.log = log
        self.unavailable = unavailable
        self.broken = broken

    def insert_columns(self, table: str, columns: Mapping[str, Any]) -> int:
        if self.broken is not None:
            raise self.broken
        if self.unavailable:
            self.unavailable -= 1
            self.log.add("unavailable", table)
            raise WarehouseUnavailable("connection refused (test)", retry_after=0.05)
        rows = self.real.insert_columns(table, columns)
        self.log.add("insert", rows)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def run_sink(wh: ChdbWarehouse, messages: list[Message], log: Log, **faults: Any) -> tuple[WarehouseSink, Exception]:
    config = SinkConfig(
        group_id="landing-test", flush_interval_s=0.05, batch_bytes=20_000, max_retry_backoff_s=0.2, metrics_port=0
    )
    # Nothing listens on port 1: the client objects are replaced before any use.
    sink = WarehouseSink({"bootstrap.servers": "127.0.0.1:1"}, Warehouse(wh, log, **faults), config, DEFAULT_ROUTES)  # type: ignore[arg-type]
    consumer = Backlog(messages, log)
    sink.consumer = consumer  # type: ignore[assignment]
    sink.producer = NoDeadLetters()  # type: ignore[assignment]
    failure: list[Exception] = []

    def target() -> None:
        try:
            sink.run()
        except Exception as exc:  # the test looks at it
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    last = {p: max(m.offset() for m in messages if m.partition() == p) + 1 for p in range(PARTITIONS)}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and thread.is_alive():
        committed: dict[int, int] = {}
        for offsets in log.of("commit"):
            committed.update(offsets)
        if committed == last:
            break
        time.sleep(0.05)
    sink.stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the sink did not stop"
    return sink, failure[0] if failure else None  # type: ignore[return-value]


def samples_in(wh: ChdbWarehouse) -> tuple[int, int]:
    total, distinct = wh.query("SELECT count(), uniqExact(id) FROM telemetry_samples").rows[0]
    return int(total), int(distinct)


def check_commits_follow_inserts(log: Log, messages: list[Message]) -> None:
    """Per partition, commits only move forward, and each covers only samples already inserted."""
    samples_of = {(m.partition(), m.offset()): m.value().count(b'"id"') for m in messages}
    inserted = 0
    committed = dict.fromkeys(range(PARTITIONS), 0)
    for kind, what in log.events:
        if kind == "insert":
            inserted += what
        elif kind == "commit":
            for p, offset in what.items():
                assert offset >= committed[p], "a commit went backwards"
                committed[p] = offset
            covered = sum(n for (p, o), n in samples_of.items() if o < committed[p])
            assert covered <= inserted, "offsets were committed before their rows were inserted"


def test_batches_land_in_order_while_the_next_is_gathered(wh: ChdbWarehouse) -> None:
    messages, log = backlog(), Log()
    sink, failure = run_sink(wh, messages, log)
    assert failure is None
    assert samples_in(wh) == (6 * 30 * 8, 6 * 30 * 8)
    assert len(log.of("commit")) > 3  # several batches, not one
    check_commits_follow_inserts(log, messages)
    assert sink.stats.retries == 0 and not log.of("pause")


def test_an_unavailable_warehouse_pauses_keeps_alive_and_loses_nothing(wh: ChdbWarehouse) -> None:
    messages, log = backlog(), Log()
    sink, failure = run_sink(wh, messages, log, unavailable=4)
    assert failure is None
    assert sink.stats.retries == 4
    assert log.of("pause") and len(log.of("pause")) == len(log.of("resume"))
    assert samples_in(wh) == (6 * 30 * 8, 6 * 30 * 8)  # every sample once: nothing lost, nothing doubled
    check_commits_follow_inserts(log, messages)


def test_an_error_while_landing_stops_the_sink_with_it(wh: ChdbWarehouse) -> None:
    messages, log = backlog(polls=2), Log()
    _, failure = run_sink(wh, messages, log, broken=RuntimeError("disk full (test)"))
    assert isinstance(failure, RuntimeError) and "disk full" in str(failure)
    assert not log.of("commit")  # nothing committed that is not in the warehouse
    assert samples_in(wh) == (0, 0)
