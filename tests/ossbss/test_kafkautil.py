"""Lag and group helpers on the real broker: what the pipeline's drain and the benchmarks' clocks read."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from ossbss.kafkautil import LagProbe, committed_lag, ensure_topics, group_assignment


def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in per_partition.items():
        for n in range(count):
            producer.produce(topic, f"{partition}-{n}".encode(), partition=partition)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def test_lag_is_what_the_group_has_not_committed(kafka_bootstrap: str, unique: str) -> None:
    config = {"bootstrap.servers": kafka_bootstrap}
    topic, other, group = f"lag-{unique}", f"lag-other-{unique}", f"lag-group-{unique}"
    ensure_topics(config, 3, [topic, other])
    _produce(kafka_bootstrap, topic, {0: 5, 1: 7, 2: 0})
    _produce(kafka_bootstrap, other, {1: 4})
    probe = LagProbe(config, group)
    # Nothing committed: everything is lag; a topic not created yet has none.
    assert probe.lag([topic, other, f"missing-{unique}"]) == {topic: 12, other: 4, f"missing-{unique}": 0}
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 3)])
    # The same probe, asked again, sees the new commits and the new records.
    _produce(kafka_bootstrap, topic, {2: 2})
    assert probe.lag([topic, other]) == {topic: 4 + 2, other: 4}
    assert committed_lag(config, group, [topic]) == {topic: 6}
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 1, 7), TopicPartition(topic, 2, 2)])
    assert probe.lag([topic]) == {topic: 0}
    probe.close()


def test_group_assignment_of_a_group_with_no_members(kafka_bootstrap: str, unique: str) -> None:
    config = {"bootstrap.servers": kafka_bootstrap}
    topic, group = f"assign-{unique}", f"assign-group-{unique}"
    ensure_topics(config, 2, [topic])
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 0)])
    stable, members = group_assignment(config, group)
    assert not stable and members == []
