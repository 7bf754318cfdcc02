"""The assurance worker on a real broker: alerts out, bad input dead-lettered, state resumed from a checkpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from assurance.config import assurance_config
from assurance.worker import AssuranceWorker
from models.codec import encode, encode_many
from models.records import Alert, DeadLetter, FaultEvent, InterfaceRate
from models.topics import ALERTS, DEAD_LETTERS
from ossbss.config import KafkaConfig
from ossbss.kafkautil import ensure_compacted_topic, ensure_topics

pytestmark = pytest.mark.integration


def read_topic(client: dict[str, Any], topic: str, keep: Callable[[bytes], bool]) -> list[bytes]:
    """Every message of ``topic`` up to its current end that ``keep`` accepts, in partition order."""
    consumer = Consumer({**client, "group.id": f"reader-{time.monotonic_ns()}", "enable.auto.commit": False})
    found: list[bytes] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                if msg.value() and keep(msg.value()):
                    found.append(msg.value())
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
    finally:
        consumer.close()
    return found


def run_worker(worker: AssuranceWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_alerts_dead_letters_and_resumes_from_its_checkpoint(kafka_bootstrap: str, unique: str) -> None:
    client = KafkaConfig().client_config(kafka_bootstrap)
    rates_topic, faults_topic = f"test.rates.{unique}", f"test.faults.{unique}"
    ensure_topics(client, 4, [rates_topic, faults_topic, ALERTS.name, DEAD_LETTERS.name])
    device = f"worker-{unique}"
    config = assurance_config(
        {"assurance": {"group_id": f"assurance-{unique}", "predict_faults": False, "link_resolve_after_s": 0}}
    )
    producer = Producer(client)
    down = FaultEvent(id=f"{device}/down", device=device, ts_ms=int(time.time() * 1000), kind="linkDown", if_index=7)
    good_window = InterfaceRate(
        id=f"{device}/1/w", device=device, if_index=1, window_start_ms=down.ts_ms - 60_000, samples=6
    )
    producer.produce(faults_topic, b"{not json", device.encode())
    producer.produce(faults_topic, encode(down), device.encode())
    batch = encode_many([good_window])[:-1] + b',{"id": "x", "device": 5}]'  # one good window, one bad element
    producer.produce(rates_topic, batch, device.encode())
    assert producer.flush(10) == 0

    worker = AssuranceWorker(client, config, inputs=(rates_topic, faults_topic))
    thread = run_worker(worker)
    wait(lambda: worker.stats.alerts >= 1 and worker.stats.dead_letters >= 2, "the alert and two dead letters")
    worker.stop()
    thread.join(30)
    assert worker.stats.rates == 1 and worker.stats.faults == 1

    alerts = [
        msgspec.json.decode(v, type=Alert) for v in read_topic(client, ALERTS.name, lambda v: device.encode() in v)
    ]
    assert [(a.name, a.status, a.if_index) for a in alerts] == [("InterfaceDown", "firing", 7)]
    letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in read_topic(client, DEAD_LETTERS.name, lambda v: unique.encode() in v)
    ]
    by_topic = {letter.topic: letter for letter in letters}
    assert set(by_topic) == {rates_topic, faults_topic}
    assert by_topic[faults_topic].stage == "assurance" and "malformed" in by_topic[faults_topic].reason
    assert "element 1" in by_topic[rates_topic].reason

    # A new worker of the group resumes from the checkpoint: nothing is processed twice, and the
    # alert opened before is resolved with the next id of its sequence.
    up = FaultEvent(id=f"{device}/up", device=device, ts_ms=down.ts_ms + 1000, kind="linkUp", if_index=7)
    producer.produce(faults_topic, encode(up), device.encode())
    assert producer.flush(10) == 0
    resumed = AssuranceWorker(client, config, inputs=(rates_topic, faults_topic))
    thread = run_worker(resumed)
    wait(lambda: resumed.stats.alerts >= 1, "the resolution")
    resumed.stop()
    thread.join(30)
    assert resumed.stats.restored >= 1
    assert resumed.stats.faults == 1 and resumed.stats.rates == 0 and resumed.stats.dead_letters == 0
    alerts = [
        msgspec.json.decode(v, type=Alert) for v in read_topic(client, ALERTS.name, lambda v: device.encode() in v)
    ]
    assert [a.status for a in alerts] == ["firing", "resolved"]
    assert alerts[1].id.rsplit(":", 1)[1] == "2" and alerts[1].fingerprint == alerts[0].fingerprint


def test_a_large_state_is_checkpointed_in_chunks_and_restored_whole(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assurance.worker as worker_module
    from assurance.rules import WINDOW_MS, PartitionAssurance

    monkeypatch.setattr(worker_module, "CHECKPOINT_CHUNK_BYTES", 4096)
    client = KafkaConfig().client_config(kafka_bootstrap)
    ensure_topics(client, 4)
    ensure_compacted_topic(client, "assurance.checkpoints", worker_module.CHECKPOINT_MAX_BYTES)
    config = assurance_config({"assurance": {"group_id": f"chunks-{unique}", "predict_faults": False}})
    state = PartitionAssurance(config)
    for minute in range(5):
        windows = [
            InterfaceRate(
                id=f"c/{i}/{minute}", device=f"c{i // 8}", if_index=i % 8, samples=6, window_start_ms=minute * WINDOW_MS
            )
            for i in range(40)
        ]
        state.process(windows, [], (minute + 1) * WINDOW_MS)
    writer = AssuranceWorker(client, config)
    writer.partitions[2] = state
    writer.positions[(writer.inputs[0], 2)] = 17
    writer.checkpoint([2])
    first = writer._manifests[2]
    assert first.chunks > 3 and first.size == len(state.snapshot())
    time.sleep(0.005)
    writer.checkpoint([2])  # replaces the first: its chunks get tombstones
    assert writer._manifests[2].written_ms != first.written_ms
    writer.producer.flush(10)

    reader = AssuranceWorker(client, config)
    point, data = reader._load_checkpoints({2})[2]
    assert point == writer._manifests[2] and point.offsets == {writer.inputs[0]: 17}
    assert data == state.snapshot()
    tombstoned = read_topic(client, "assurance.checkpoints", lambda v: True)
    assert all(key not in tombstoned for key in first.chunk_keys())


def test_an_unreadable_checkpoint_is_ignored_not_fatal(kafka_bootstrap: str, unique: str) -> None:
    import assurance.worker as worker_module

    client = KafkaConfig().client_config(kafka_bootstrap)
    ensure_compacted_topic(client, "assurance.checkpoints", worker_module.CHECKPOINT_MAX_BYTES)
    config = assurance_config({"assurance": {"group_id": f"old-{unique}", "predict_faults": False}})
    producer = Producer(client)
    # A manifest of an older release (another shape) and plain garbage, under this group's keys.
    old = msgspec.msgpack.encode({"group": f"old-{unique}", "partition": 0, "offsets": {}, "state": b"x"})
    producer.produce("assurance.checkpoints", old, f"old-{unique}/0".encode())
    producer.produce("assurance.checkpoints", b"\xc1garbage", f"old-{unique}/1".encode())
    assert producer.flush(10) == 0
    assert AssuranceWorker(client, config)._load_checkpoints({0, 1}) == {}
