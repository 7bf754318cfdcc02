"""Batched messages per partition (collectors/publish.py): each record on its own key's partition."""

from __future__ import annotations

import json

from aiokafka.partitioner import murmur2

from collectors.publish import MAX_GROUP, MAX_GROUP_BYTES, KeyPartitions, grouped_by_partition


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
