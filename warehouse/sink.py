"""The batched, idempotent Kafka -> ClickHouse sink.

Flush order (each step says what it guarantees):

1. insert every table's batch into ClickHouse: rows are keyed by record id in ReplacingMergeTree
   tables, so inserting a batch again after a crash leaves one row per id;
2. produce the batch's dead letters and wait for them: a refused record is on the broker before its
   input offset is committed;
3. commit the Kafka offsets of the batch, synchronously: only what is in ClickHouse is committed, so
   a crash before this step replays the batch (harmless by 1) and a crash after it loses nothing;
4. update the counters: they describe only committed work.

While the warehouse is unavailable the sink pauses its partitions, keeps its group membership alive,
and retries with exponential backoff; nothing is consumed meanwhile (back-pressure), nothing is lost.

Landing overlaps gathering (``run``): steps 1 and 2 of a batch run on a thread of their own while the
consuming thread gathers and decodes the next batch, so the engine's insert (or a server's HTTP round
trip) no longer stops the decoding. At most one batch is landing and one being gathered (memory stays
bounded by two batches); the consuming thread commits a batch (3, 4) as soon as it has landed, and
hands the next one over only after that, so batches land and commit in order. Only the consuming
thread calls the consumer, the commit included (a synchronous commit from the landing thread could wait
on a consumer blocked in consume(), which stalled the sink in the crash tests): while a landing waits
for the warehouse, it is that thread that pauses the partitions and keeps the membership alive, and a
message it still receives is kept for the next batch, not dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from models.codec import (
    codec_for,
    dead_letter_for,
    encode,
)
from models.records import (
    Alert,
    DeadLetter,
    FaultEvent,
    InterfaceRate,
    RatedUsage,
    Record,
    TelemetrySample,
    UsageRecord,
)
from models.topics import (
    ALERTS,
    DEAD_LETTERS,
    FAULT_EVENTS,
    INTERFACE_RATES_1M,
    TELEMETRY_SAMPLES,
    USAGE_RATED,
    USAGE_RECORDS,
)
from ossbss.config import SinkConfig
from warehouse.base import QueryError, Warehouse, WarehouseUnavailable
from warehouse.fastpath import FastColumns, fast_columns_for
from warehouse.rows import Column, columns_for

log = logging.getLogger("ossbss.sink")


@dataclass(frozen=True)
class SinkRoute:
    """Where a topic lands. ``validated_by`` names the stream stage that dead-letters the topic's bad
    records; the sink then skips (and counts) them rather than dead-lettering them a second time."""

    topic: str
    record_type: type[Record]
    table: str
    validated_by: str | None = None


DEFAULT_ROUTES: tuple[SinkRoute, ...] = (
    SinkRoute(TELEMETRY_SAMPLES.name, TelemetrySample, "telemetry_samples", validated_by="interface_rates"),
    SinkRoute(USAGE_RECORDS.name, UsageRecord, "usage_records", validated_by="rating"),
    SinkRoute(INTERFACE_RATES_1M.name, InterfaceRate, "interface_rates_1m"),
    SinkRoute(USAGE_RATED.name, RatedUsage, "rated_usage"),
    SinkRoute(FAULT_EVENTS.name, FaultEvent, "fault_events"),
    SinkRoute(ALERTS.name, Alert, "alerts"),
    SinkRoute(DEAD_LETTERS.name, DeadLetter, "dead_letters"),
)


@dataclass
class SinkStats:
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    consumed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: int = 0
    skipped_invalid: int = 0
    batches: int = 0
    retries: int = 0
    last_batch_ms: float = 0.0
    last_flush_at: float = 0.0


@dataclass
class _Insert:
    """One topic's share of a flush: its messages, then either the columns of the fast path or the records
    of the object path, and per row the message it came from (for a dead letter of a refused row)."""

    route: SinkRoute
    msgs: list[Message]
    values: list[bytes | None]
    columns: dict[str, Column] | None = None
    records: list[Record] | None = None
    row_msgs: list[Message] = field(default_factory=list)
    # Of the object path's decode: values refused, as dead letters or (validated topics) a count.
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0


@dataclass
class _Landed:
    """A batch whose rows are in the warehouse and whose dead letters are on the broker: what its commit
    and its counters need."""

    messages: list[Message]
    by_topic: dict[str, list[Message]]
    inserts: list[_Insert]
    dead: int
    skipped: int
    decoding_s: float
    started: float


class WarehouseSink:
    """Consumes the pipeline's topics and writes them to the warehouse in columnar batches."""

    def __init__(
        self,
        client_config: dict[str, Any],
        warehouse: Warehouse,
        config: SinkConfig,
        routes: tuple[SinkRoute, ...] = DEFAULT_ROUTES,
        on_flush: Callable[[SinkStats], None] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.config = config
        self.routes = {r.topic: r for r in routes}
        self.codecs = {r.topic: codec_for(r.record_type) for r in routes}
        # Topics that may skip record objects: batches of plainly valid messages go from bytes to columns.
        self.fast: dict[str, FastColumns] = {}
        for r in routes:
            fast = fast_columns_for(r.record_type, r.table)
            if fast is not None:
                self.fast[r.topic] = fast
        self.stats = SinkStats()
        self.on_flush = on_flush
        self.consumer = Consumer(
            {
                **client_config,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.poll.interval.ms": 600_000,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "queued.max.messages.kbytes": 256 * 1024,
            }
        )
        self.producer = Producer(
            {**client_config, "enable.idempotence": True, "linger.ms": 10, "message.max.bytes": 8 * 1024 * 1024}
        )
        self._assignment: list[TopicPartition] = []
        self._stop = threading.Event()
        # The batch landing on its own thread (run), whether it waits for the warehouse, and what the
        # consuming thread received while it kept the membership alive meanwhile.
        self._lander: ThreadPoolExecutor | None = None
        self._landing: Future[_Landed] | None = None
        self._landing_waits = threading.Event()
        self._carried: list[Message] = []

    # -- consuming -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment = partitions

    def start(self) -> None:
        self.consumer.subscribe(list(self.routes), on_assign=self._on_assign)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume and flush until :meth:`stop`, each batch landing while the next is gathered; the last
        partial batch is landed before returning."""
        self.start()
        self._lander = ThreadPoolExecutor(1, thread_name_prefix="sink-landing")
        try:
            while not self._stop.is_set():
                self.poll_batch()
        finally:
            try:
                self._finish_landing()
            finally:
                self._lander.shutdown(wait=True)
                self._lander = None
                self.consumer.close()
                self.producer.flush(30)

    def poll_batch(self) -> int:
        """Gather up to ``batch_size`` messages, ``batch_bytes`` of them or ``flush_interval_s``, then flush
        them (on the landing thread when :meth:`run` started one); returns messages."""
        messages = self._gather()
        if not messages:
            self._finish_landing()  # nothing new: commit the batch landing now rather than with the next
            return 0
        if self._lander is None:
            self.flush(messages)
            return len(messages)
        prepared = self._prepare(messages)  # decoded while the previous batch lands
        self._finish_landing()  # that one is committed: batches land and commit in order
        self._landing = self._lander.submit(self._land, messages, *prepared, True)
        return len(messages)

    def _finish_landing(self) -> None:
        """Wait for the batch landing (raising its error), then commit it; while it waits for the warehouse,
        pause the partitions and keep the group membership alive, keeping any message still received."""
        landing, self._landing = self._landing, None
        if landing is None:
            return
        while True:
            try:
                landed = landing.result(timeout=0.2)
                break
            except FutureTimeout:
                if self._landing_waits.is_set():
                    self._paused_while(lambda: not landing.done())
        self._complete(landed)

    def _gather(self) -> list[Message]:
        deadline = time.monotonic() + self.config.flush_interval_s
        messages, self._carried = self._carried, []
        size = sum(len(m) for m in messages)
        limit, byte_limit = self.config.batch_size, self.config.batch_bytes
        while len(messages) < limit and size < byte_limit and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._landing is not None and self._landing.done():
                self._finish_landing()  # committed as soon as it has landed, not with the next batch
            got = self._received(self.consumer.consume(min(limit - len(messages), 10_000), timeout=min(remaining, 0.1)))
            messages.extend(got)
            size += sum(len(m) for m in got)
        return messages

    @staticmethod
    def _received(got: list[Message]) -> list[Message]:
        """The messages of a consume call; errors other than a partition's end are logged."""
        kept = []
        for msg in got:
            err = msg.error()
            if err is None:
                kept.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("sink: consume error %s", err)
        return kept

    # -- flushing ----------------------------------------------------------------------------------

    def flush(self, messages: list[Message]) -> None:
        """Decode, land and commit ``messages`` now, on this thread."""
        self._complete(self._land(messages, *self._prepare(messages)))

    def _prepare(self, messages: list[Message]) -> tuple[dict[str, list[Message]], list[_Insert], float]:
        """Each topic's messages decoded into a batch for its table (fast path or object path)."""
        started = time.perf_counter()
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for msg in messages:
            by_topic[_topic(msg)].append(msg)
        batches: list[_Insert] = []
        for topic, msgs in by_topic.items():
            route = self.routes[topic]
            values = [m.value() for m in msgs]
            fast = self.fast.get(topic)
            got = fast.decode(values) if fast is not None else None
            batch = _Insert(route, msgs, values)
            if got is not None:
                # Every message plainly valid: columns straight from the bytes (warehouse/fastpath.py).
                batch.columns, origin = got
                batch.row_msgs = [msgs[i] for i in origin]
            else:
                self._decode_records(batch)
            batches.append(batch)
        return by_topic, batches, time.perf_counter() - started

    def _land(
        self,
        messages: list[Message],
        by_topic: dict[str, list[Message]],
        batches: list[_Insert],
        decoding_s: float,
        background: bool = False,
    ) -> _Landed:
        """Steps 1 and 2 of the module's flush order for one prepared batch (``background``: on the landing
        thread, which leaves the consumer to the consuming thread); :meth:`_complete` does 3 and 4."""
        started = time.perf_counter()
        inserts = [batch for batch in batches if batch.row_msgs]
        # 1. insert (idempotent on record id)
        refused = [dl for batch in inserts for dl in self._insert_with_retry(batch, background)]
        dead = [dl for batch in batches for dl in batch.dead] + refused
        # 2. dead letters on the broker before the offsets move
        for dl in dead:
            self.producer.produce(DEAD_LETTERS.name, encode(dl), dl.topic.encode())
        if dead and self.producer.flush(60) > 0:
            raise RuntimeError("sink: dead letters could not be delivered to Kafka; not committing offsets")
        return _Landed(messages, by_topic, inserts, len(dead), sum(b.skipped for b in batches), decoding_s, started)

    def _complete(self, landed: _Landed) -> None:
        """Steps 3 and 4, on the consuming thread: a synchronous commit from another thread can wait on a
        consumer blocked in consume() (seen as a stalled sink in the crash tests)."""
        # 3. commit what is now in the warehouse
        self._commit(landed.messages)
        # 4. counters
        for batch in landed.inserts:
            self.stats.rows[batch.route.table] += len(batch.row_msgs)
        for topic, msgs in landed.by_topic.items():
            self.stats.consumed[topic] += len(msgs)
        self.stats.dead_letters += landed.dead
        self.stats.skipped_invalid += landed.skipped
        self.stats.batches += 1
        self.stats.last_batch_ms = (landed.decoding_s + time.perf_counter() - landed.started) * 1000
        self.stats.last_flush_at = time.time()
        if self.on_flush:
            self.on_flush(self.stats)

    def _decode_records(self, batch: _Insert) -> None:
        """The object path: decode ``batch`` into records, kept on it with their messages, and the dead letters
        of the values refused (none for a topic whose stream stage dead-letters them: those are counted)."""
        route, msgs = batch.route, batch.msgs
        records, kept, failures = self.codecs[route.topic].decode_batch(batch.values)
        batch.dead, batch.skipped = [], 0
        for failure in failures:
            m = msgs[failure.index]
            if route.validated_by:
                batch.skipped += 1  # the owning stream stage dead-letters this record, with its reason
            else:
                batch.dead.append(self._dead_letter(m, failure.reason, failure.payload, failure.element))
        batch.records = records
        batch.row_msgs = [msgs[i] for i in kept]
        batch.columns = None

    def _dead_letter(self, msg: Message, reason: str, payload: bytes | None = None, element: int = -1) -> DeadLetter:
        return dead_letter_for(
            payload if element >= 0 else msg.value(),
            element=element,
            topic=_topic(msg),
            stage="sink",
            reason=reason,
            partition=_int(msg.partition()),
            offset=_int(msg.offset()),
        )

    def _insert_with_retry(self, batch: _Insert, background: bool) -> list[DeadLetter]:
        """Insert, backing off while the warehouse is unavailable; rows the engine refuses become dead letters."""
        backoff = 0.5
        while True:
            try:
                return self._insert(batch)
            except WarehouseUnavailable as exc:
                self.stats.retries += 1
                wait = min(max(backoff, exc.retry_after), self.config.max_retry_backoff_s)
                log.warning("sink: warehouse unavailable (%s); retrying %s in %.1fs", exc, batch.route.table, wait)
                if background:  # the consuming thread pauses and keeps the membership alive (_finish_landing)
                    self._landing_waits.set()
                    time.sleep(wait)
                else:
                    self._wait_paused(wait)
                backoff = min(backoff * 2, self.config.max_retry_backoff_s)
                if self._stop.is_set() and backoff >= self.config.max_retry_backoff_s:
                    raise
            finally:
                self._landing_waits.clear()

    def _insert(self, batch: _Insert) -> list[DeadLetter]:
        table = batch.route.table
        if batch.columns is not None:
            try:
                self.warehouse.insert_columns(table, batch.columns)
                return []
            except QueryError:
                # Refused as a whole: the object path finds the refused rows and gives today's reasons (a
                # failed insert did not land, so the good rows are not inserted twice; and rows are
                # idempotent on their id anyway).
                self._decode_records(batch)
        return self._insert_isolating(table, batch.records or [], batch.row_msgs)

    def _insert_isolating(self, table: str, records: list[Record], msgs: list[Message]) -> list[DeadLetter]:
        try:
            self.warehouse.insert_columns(table, columns_for(table, records))
            return []
        except QueryError as exc:
            if len(records) == 1:
                return [self._dead_letter(msgs[0], f"warehouse refused the row for {table}: {exc}")]
            # Halve the batch until the refused rows are isolated; the others still land.
            mid = len(records) // 2
            return self._insert_isolating(table, records[:mid], msgs[:mid]) + self._insert_isolating(
                table, records[mid:], msgs[mid:]
            )

    def _wait_paused(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self._paused_while(lambda: time.monotonic() < end)

    def _paused_while(self, waiting: Callable[[], bool]) -> None:
        """Pause the assignment while ``waiting()`` holds, keeping the group membership alive (back-pressure);
        a message still delivered meanwhile is kept for the next batch, not dropped."""
        paused = list(self._assignment)
        if paused:
            self.consumer.pause(paused)
        try:
            while waiting():
                self._carried.extend(self._received(self.consumer.consume(100, timeout=0.2)))
        finally:
            if paused:
                self.consumer.resume(paused)

    def _commit(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (_topic(m), _int(m.partition()))
            last[key] = max(last.get(key, -1), _int(m.offset()))
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        self.consumer.commit(offsets=offsets, asynchronous=False)


def _topic(msg: Message) -> str:
    return msg.topic() or ""


def _int(value: int | None) -> int:
    return -1 if value is None else value
