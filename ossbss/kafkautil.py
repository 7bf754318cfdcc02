"""Small Kafka helpers shared by the shell, the sink and tests: topic creation and offsets."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from models.topics import TOPICS


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached; the message says where it was looked for."""


def ensure_topics(client_config: dict[str, Any], partitions: int, names: Iterable[str] | None = None) -> None:
    """Create the pipeline's topics (keyed topics need a fixed partition count) when they do not exist."""
    admin = AdminClient(client_config)
    wanted = list(names) if names is not None else [t.name for t in TOPICS]
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {client_config.get('bootstrap.servers')}: {exc}. "
            "Start the local broker with `python -m ossbss.localstack.kafka start` or set kafka.bootstrap_servers."
        ) from None
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=1) for name in wanted if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaUnavailable(f"cannot create topic {name}: {exc}") from None


def ensure_compacted_topic(client_config: dict[str, Any], name: str, max_message_bytes: int) -> None:
    """Create a one-partition compacted topic for state snapshots (the newest value per key is kept)."""
    admin = AdminClient(client_config)
    try:
        if name in admin.list_topics(timeout=10).topics:
            return
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {client_config.get('bootstrap.servers')}: {exc}") from None
    topic = NewTopic(
        name,
        num_partitions=1,
        replication_factor=1,
        config={"cleanup.policy": "compact", "max.message.bytes": str(max_message_bytes)},
    )
    for future in admin.create_topics([topic], operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaUnavailable(f"cannot create topic {name}: {exc}") from None


def committed_lag(client_config: dict[str, Any], group_id: str, topics: Iterable[str]) -> dict[str, int]:
    """Records not yet committed by ``group_id`` on each topic."""
    consumer = Consumer({**client_config, "group.id": group_id, "enable.auto.commit": False})
    try:
        md = consumer.list_topics(timeout=10)
        lag: dict[str, int] = {}
        for topic in topics:
            meta = md.topics.get(topic)
            if meta is None:
                lag[topic] = 0
                continue
            tps = [TopicPartition(topic, p) for p in meta.partitions]
            committed = _committed_with_retry(consumer, tps)
            total = 0
            for tp in committed:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                total += high - max(tp.offset, 0)
            lag[topic] = total
        return lag
    finally:
        consumer.close()


def group_assignment(client_config: dict[str, Any], group_id: str) -> tuple[bool, list[set[tuple[str, int]]]]:
    """Whether ``group_id`` is stable (no rebalance under way), and each member's assigned (topic, partition)s."""
    admin = AdminClient(client_config)
    description = admin.describe_consumer_groups([group_id])[group_id].result(timeout=10)
    members = [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in description.members]
    return description.state == ConsumerGroupState.STABLE, members


def _committed_with_retry(consumer: Consumer, tps: list[TopicPartition], attempts: int = 10) -> list[TopicPartition]:
    """Committed offsets; the group coordinator moves or loads at times (NOT_COORDINATOR): ask again."""
    for attempt in range(attempts):
        try:
            return list(consumer.committed(tps, timeout=10))
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    return []
