"""Produce records to Kafka: the one place collectors touch the broker.

Records are encoded once with the wire codec and handed to librdkafka (confluent-kafka), which
batches and compresses them. ``flush()`` waits for delivery; a delivery failure is raised, not logged
and forgotten, so a collector never believes an undelivered record was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaError, KafkaException, Producer

from models.codec import MAX_RECORD_BYTES, encode, encode_many
from models.records import Record
from models.topics import BATCHED_TOPICS

# At most this many records in one batched message (a large chassis has a few hundred interfaces).
MAX_GROUP = 1000
# ... and at most this many bytes: no more than one record may be (MAX_RECORD_BYTES), so a consumer's
# check that no element of a message is over that limit is free (a message within it cannot hold a
# larger element; above it, the check splits the whole array: about 0.3 us a record, paid by the worker
# and the sink alike), and well under the broker's default message limit (1 MB).
MAX_GROUP_BYTES = MAX_RECORD_BYTES


class PublishError(RuntimeError):
    """Records could not be delivered to Kafka; ``failed`` counts them and ``reason`` says why."""

    def __init__(self, failed: int, reason: str) -> None:
        super().__init__(f"{failed} record(s) not delivered to Kafka: {reason}")
        self.failed = failed
        self.reason = reason


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Producer settings tuned for throughput with idempotence (no duplicates from producer retries).

    ``overrides`` may be a whole client config (``bootstrap.servers`` included, security settings).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        # Kafka's own (Java, aiokafka) key -> partition mapping, which faust's changelog tables use too:
        # a device's or an account's records then sit on the partition that holds its stream state.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "message.max.bytes": 8 * 1024 * 1024,
    }
    config.update(overrides)
    return config


def partition_count(producer: Producer, topic: str, known: dict[str, int], timeout: float) -> int:
    """How many partitions ``topic`` has: asked of the broker once, then remembered in ``known``."""
    count = known.get(topic)
    if count is None:
        meta = producer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise PublishError(0, f"topic {topic} is unknown to the broker: {meta.error if meta else 'missing'}")
        count = known[topic] = len(meta.partitions)
    return count


class KeyPartitions:
    """The partition Kafka's default partitioner (murmur2) gives each key, remembered: murmur2 is pure
    Python, and devices and accounts recur."""

    def __init__(self) -> None:
        self._cache: dict[int, dict[bytes, int]] = {}  # by partition count, then key

    def table(self, partitions: int) -> Callable[[bytes], int]:
        """A function key -> partition for a topic of ``partitions`` partitions."""
        cache = self._cache.setdefault(partitions, {})

        def partition_of(key: bytes) -> int:
            partition = cache.get(key)
            if partition is None:
                if len(cache) > 200_000:
                    cache.clear()  # bounded: keys are devices or accounts, and both sets are finite
                partition = cache[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
            return partition

        return partition_of


def grouped_by_partition(
    keys: Iterable[bytes], values: Iterable[bytes], partition_of: Callable[[bytes], int]
) -> list[tuple[int, bytes, bytes]]:
    """Encoded records as batched messages: ``(partition, key, JSON array)``, at most MAX_GROUP records
    (and about MAX_GROUP_BYTES) each, every record on the partition its own key goes to (the message's
    key is one of theirs)."""
    groups: dict[int, tuple[bytes, list[bytes]]] = {}
    for key, value in zip(keys, values, strict=True):
        partition = partition_of(key)
        group = groups.get(partition)
        if group is None:
            group = groups[partition] = (key, [])
        group[1].append(value)
    messages: list[tuple[int, bytes, bytes]] = []
    for partition, (key, members) in groups.items():
        low, size = 0, 1  # the brackets, and a comma after each member but the last
        for high, member in enumerate(members):
            if high > low and (high - low >= MAX_GROUP or size + len(member) + 1 > MAX_GROUP_BYTES):
                messages.append((partition, key, b"[" + b",".join(members[low:high]) + b"]"))
                low, size = high, 1
            size += len(member) + 1
        messages.append((partition, key, b"[" + b",".join(members[low:]) + b"]"))
    return messages


class RecordPublisher:
    """Encodes records and produces them, keyed so that one device (or account) stays on one partition."""

    def __init__(self, bootstrap_servers: str, **overrides: Any) -> None:
        self._producer = Producer(producer_config(bootstrap_servers, **overrides))
        self._partition_counts: dict[str, int] = {}
        self._key_partitions = KeyPartitions()
        self._group_limit: dict[str, int] = {}  # records per batched message, by topic (MAX_GROUP_BYTES)
        self.delivered = 0
        self.failed = 0
        self._last_error = ""

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self._last_error = str(err)

    def publish(
        self, topic: str, records: Iterable[Record], key: Callable[[Record], str], grouped: bool | None = None
    ) -> int:
        """Queue records for ``topic``; returns how many were queued.

        On a batched topic (``telemetry.samples``) consecutive records with the same key travel as one
        message, a JSON array: one message per device poll rather than one per interface. ``grouped``
        overrides the topic's declaration (a benchmark's copy of a batched topic is sent the same way).
        """
        if topic in BATCHED_TOPICS if grouped is None else grouped:
            return self._publish_grouped(topic, records, key)
        count = 0
        for record in records:
            self.produce_raw(topic, encode(record), key(record).encode())
            count += 1
        return count

    def _publish_grouped(self, topic: str, records: Iterable[Record], key: Callable[[Record], str]) -> int:
        """One message per partition per call (at most MAX_GROUP records, MAX_GROUP_BYTES): every record
        in it has a key that Kafka's partitioner sends to that partition, so keyed state stays
        co-partitioned. A group is sent at the count that fit MAX_GROUP_BYTES on the topic's last
        message; one that still encodes larger is halved."""
        partitions = self._partitions(topic)
        groups: dict[int, tuple[bytes, list[Record]]] = {}
        count = 0
        partition_of = self._key_partitions.table(partitions)
        limit = self._group_limit.get(topic, MAX_GROUP)
        for record in records:
            k = key(record).encode()
            partition = partition_of(k)
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = (k, [])
            group[1].append(record)
            count += 1
            if len(group[1]) >= limit:
                self._produce_group(topic, partition, *groups.pop(partition))
                limit = self._group_limit[topic]
        for partition, (k, members) in groups.items():
            self._produce_group(topic, partition, k, members)
        return count

    def _produce_group(self, topic: str, partition: int, key: bytes, members: list[Record]) -> None:
        value = encode_many(members)
        if len(value) > MAX_GROUP_BYTES and len(members) > 1:
            half = len(members) // 2
            self._produce_group(topic, partition, key, members[:half])
            self._produce_group(topic, partition, key, members[half:])
            return
        # the count that would have filled nine tenths of the byte budget, for the topic's next groups
        fits = int(0.9 * MAX_GROUP_BYTES * len(members) / max(len(value), 1))
        self._group_limit[topic] = max(1, min(MAX_GROUP, fits))
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise PublishError(len(members), str(exc)) from None

    def _partitions(self, topic: str) -> int:
        return partition_count(self._producer, topic, self._partition_counts, timeout=10)

    def produce_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one already-encoded value, waiting for room when the local queue is full."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)  # the queue is full: serve delivery reports to make room
            except KafkaException as exc:
                raise PublishError(1, str(exc)) from None

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued record is delivered; raise if any failed or timed out."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PublishError(remaining, f"still queued after {timeout:.0f}s; is the broker reachable?")
        if self.failed:
            failed, self.failed = self.failed, 0
            raise PublishError(failed, self._last_error)
