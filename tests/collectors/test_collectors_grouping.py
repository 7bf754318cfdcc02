"""Batched messages per partition (collectors/publish.py): each record on its own key's partition."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer

from collectors.publish import MAX_GROUP, MAX_GROUP_BYTES, KeyPartitions, RecordPublisher, grouped_by_partition
from collectors.simulate import DeviceSimulator
from models.codec import MAX_RECORD_BYTES
from ossbss.kafkautil import ensure_topics


def kafka_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_every_record_travels_on_its_own_keys_partition_once() -> None:
    keys = [f"ACC-{n % 37:05d}".encode() for n in range(2_500)]
    values = [json.dumps({"n": n, "account": key.decode()}).encode() for n, key in enumerate(keys)]
    messages = grouped_by_partition(keys, values, KeyPartitions().table(6))
    seen = []
    for partition, key, value in messages:
        members = json.loads(value)
        assert 1 <= len(members) <= MAX_GROUP
        assert kafka_partition(key, 6) == partition
        assert all(kafka_partition(m["account"].encode(), 6) == partition for m in members)
        seen += [m["n"] for m in members]
    assert sorted(seen) == list(range(2_500))
    assert len({p for p, _, _ in messages}) <= 6


def test_large_records_are_split_by_size_and_keep_their_order() -> None:
    big = b"x" * (MAX_GROUP_BYTES // 3)
    values = [b'{"n":%d,"pad":"%s"}' % (n, big) for n in range(7)]
    messages = grouped_by_partition([b"one-key"] * 7, values, KeyPartitions().table(4))
    assert all(len(value) <= MAX_GROUP_BYTES + len(values[0]) for _, _, value in messages)
    assert len(messages) >= 3
    assert [m["n"] for _, _, value in messages for m in json.loads(value)] == list(range(7))


def test_one_oversized_record_still_goes_alone() -> None:
    huge = b'{"pad":"' + b"y" * (MAX_GROUP_BYTES * 2) + b'"}'
    messages = grouped_by_partition([b"k", b"k"], [huge, b'{"n":1}'], KeyPartitions().table(1))
    assert [len(json.loads(value)) for _, _, value in messages] == [1, 1]


def test_a_message_of_several_records_never_exceeds_the_byte_budget() -> None:
    # Sizes around the edge: each message of more than one record stays within MAX_GROUP_BYTES, which is
    # one record's limit, so a consumer's per-element size check never has to split it.
    assert MAX_GROUP_BYTES <= MAX_RECORD_BYTES
    for size in (MAX_GROUP_BYTES // 2 - 3, MAX_GROUP_BYTES // 2 - 2, MAX_GROUP_BYTES // 2 - 1, 1000, 333):
        values = [b'"' + b"z" * (size - 2) + b'"' for _ in range(9)]
        messages = grouped_by_partition([b"k"] * 9, values, KeyPartitions().table(1))
        for _, _, value in messages:
            members = json.loads(value)
            assert len(value) <= MAX_GROUP_BYTES or len(members) == 1, (size, len(value), len(members))
        assert sum(len(json.loads(value)) for _, _, value in messages) == 9


@pytest.mark.integration
def test_published_polls_travel_in_messages_within_the_byte_budget(kafka_bootstrap: str) -> None:
    # 1000 samples of a poll encode to about 300 KB: the publisher sends fewer per message, from the
    # size of the topic's previous message, so every message is within MAX_GROUP_BYTES.
    topic = f"test.grouped.{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, 3, [topic])
    sim = DeviceSimulator(120, 48, 100_000_000, 40_000_000, 10**9, 1_700_000_000_000)
    publisher = RecordPublisher(kafka_bootstrap)
    samples = [s for k in range(2) for s in sim.poll(1_700_000_000_000 + k * 10_000)]
    assert publisher.publish(topic, samples, key=lambda r: r.device, grouped=True) == len(samples)  # type: ignore[attr-defined]
    publisher.flush()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: list[str] = []
    sizes: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < len(samples) and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                members = json.loads(message.value())
                sizes.append(len(message.value()))
                assert all(kafka_partition(m["device"].encode(), 3) == message.partition() for m in members)
                seen += [m["id"] for m in members]
    consumer.close()
    assert sorted(seen) == sorted(s.id for s in samples)
    assert max(sizes) <= MAX_GROUP_BYTES
    assert max(sizes) > MAX_GROUP_BYTES // 2  # still filled: not split record by record
