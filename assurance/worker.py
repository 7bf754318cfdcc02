"""The assurance worker: 1-minute rates and fault events in, alert state changes out.

``telemetry.rates.1m`` and ``telemetry.faults`` are both keyed by device with the same partition count,
so partition ``p`` of each holds the same devices. The worker keeps one :class:`PartitionAssurance`
per assigned partition number (detectors, fault predictor, capacity forecaster, alert engine) and
produces what the alert engine emits to ``assurance.alerts``, keyed by fingerprint.

Order of work (each step says what it guarantees):

1. decode a batch; what cannot be decoded goes to the dead-letter topic with its reason;
2. feed the partition's state in offset order, collecting the alert state changes it emits;
3. produce those alerts and dead letters and wait for delivery (the latency budget from sample to
   alert is spent here: nothing waits for a batch to fill);
4. every ``checkpoint_interval_s`` (and when partitions are revoked, and on shutdown) write each
   partition's state *together with the offsets it reflects* to the compacted topic
   ``assurance.checkpoints``, then commit those offsets to the group.

A worker that starts on a partition reads its checkpoint and seeks to the offsets stored with it, so
detectors resume with what they had learnt and alert ids continue their sequence. After a crash the
inputs after the checkpoint are processed again by the same deterministic state: the alerts they
produce carry the same ids, and every consumer of ``assurance.alerts`` is idempotent on the id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from assurance.config import AssuranceConfig
from assurance.rules import PartitionAssurance
from models.codec import codec_for, dead_letter_for, encode
from models.records import Alert, DeadLetter, FaultEvent, InterfaceRate
from models.topics import ALERTS, ASSURANCE_CHECKPOINTS, DEAD_LETTERS, FAULT_EVENTS, INTERFACE_RATES_1M
from ossbss.kafkautil import ensure_compacted_topic

log = logging.getLogger("ossbss.assurance")

STAGE = "assurance"
# A partition's state can reach tens of MB (about 4.5 KB per interface): it travels in chunks.
CHECKPOINT_CHUNK_BYTES = 4 * 1024 * 1024
CHECKPOINT_MAX_BYTES = 8 * 1024 * 1024
INPUTS = (INTERFACE_RATES_1M.name, FAULT_EVENTS.name)


class Checkpoint(msgspec.Struct, frozen=True):
    """The manifest of one partition's checkpoint: the next input offset of each topic it reflects,
    and how its state was written (``chunks`` messages keyed ``<group>/<partition>/<written_ms>/<i>``).

    Chunks are written first and the manifest (keyed ``<group>/<partition>``) last, in one partition
    of a compacted topic, so a reader that sees a manifest sees its chunks. Once a newer manifest is
    on the broker the older one's chunks are deleted with tombstones; compaction then drops them.
    """

    group: str
    partition: int
    offsets: dict[str, int]
    written_ms: int
    chunks: int
    size: int

    def chunk_keys(self) -> list[bytes]:
        return [f"{self.group}/{self.partition}/{self.written_ms}/{i}".encode() for i in range(self.chunks)]


_checkpoint_encoder = msgspec.msgpack.Encoder()
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


@dataclass
class WorkerStats:
    rates: int = 0
    faults: int = 0
    alerts: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    restored: int = 0
    # Seconds from an input's event time to the moment its alert was on the broker.
    alert_latency_s: list[float] = field(default_factory=list)


class AssuranceWorker:
    def __init__(
        self,
        client_config: dict[str, Any],
        config: AssuranceConfig,
        *,
        state_factory: Callable[[int], PartitionAssurance] | None = None,
        clock: Callable[[], float] = time.time,
        on_alerts: Callable[[list[Alert]], None] | None = None,
        on_restored: Callable[[PartitionAssurance], None] | None = None,
        inputs: tuple[str, str] = INPUTS,
    ) -> None:
        self.client_config = client_config
        self.config = config
        self.inputs = inputs  # (rates topic, faults topic): the defaults, or others in tests
        self.clock = clock
        self.state_factory = state_factory or (lambda p: PartitionAssurance(config, partition=p))
        self.stats = WorkerStats()
        # Called with each batch of alerts once they are on the broker (the outputs' dispatcher), and
        # with each partition state restored from a checkpoint (outputs learn what is already open).
        self.on_alerts = on_alerts
        self.on_restored = on_restored
        self.partitions: dict[int, PartitionAssurance] = {}
        # The next offset to read per (topic, partition): what a checkpoint records.
        self.positions: dict[tuple[str, int], int] = {}
        self._rates = codec_for(InterfaceRate)
        self._faults = codec_for(FaultEvent)
        self._stop = threading.Event()
        self._last_checkpoint = time.monotonic()
        self._undelivered = ""  # the last delivery error of a checkpoint message, if any
        self._manifests: dict[int, Checkpoint] = {}  # the last checkpoint written or restored, per partition
        self.consumer = Consumer(
            {
                **client_config,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # Both inputs are partitioned by device: partition p of each must land on one worker.
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": 50,
                "max.poll.interval.ms": 600_000,
            }
        )
        self.producer = Producer(
            {
                **client_config,
                "enable.idempotence": True,
                "linger.ms": 2,
                "message.max.bytes": CHECKPOINT_MAX_BYTES,
                "compression.type": "zstd",
            }
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        ensure_compacted_topic(self.client_config, ASSURANCE_CHECKPOINTS.name, max_message_bytes=CHECKPOINT_MAX_BYTES)
        self.consumer.subscribe(list(self.inputs), on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            try:
                self.checkpoint(list(self.partitions))
            finally:
                self.consumer.close()
                self.producer.flush(30)

    def step(self, timeout: float = 0.2) -> int:
        """One poll: process what arrived, tick the alert timers, checkpoint when due; returns messages."""
        messages = [m for m in self.consumer.consume(2000, timeout=timeout) if self._usable(m)]
        alerts: list[Alert] = []
        dead: list[DeadLetter] = []
        by_partition: dict[int, tuple[list[InterfaceRate], list[FaultEvent]]] = {}
        for msg in messages:
            topic, partition = msg.topic() or "", msg.partition() or 0
            rates, faults = by_partition.setdefault(partition, ([], []))
            if topic == self.inputs[0]:
                self._decode_rates(msg, rates, dead)
            else:
                self._decode_fault(msg, faults, dead)
            self.positions[(topic, partition)] = (msg.offset() or 0) + 1
        now_ms = int(self.clock() * 1000)
        for partition, (rates, faults) in by_partition.items():
            state = self.partitions.get(partition)
            if state is None:  # a message of a partition revoked meanwhile: its new owner processes it
                continue
            self.stats.rates += len(rates)
            self.stats.faults += len(faults)
            alerts.extend(state.process(rates, faults, now_ms))
        for state in self.partitions.values():
            alerts.extend(state.tick(now_ms))
        self._publish(alerts, dead, now_ms)
        if time.monotonic() - self._last_checkpoint >= self.config.checkpoint_interval_s:
            self.checkpoint(list(self.partitions))
        return len(messages)

    # -- decoding ------------------------------------------------------------------------------------

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("assurance: consume error %s", err)
        return False

    def _decode_rates(self, msg: Message, out: list[InterfaceRate], dead: list[DeadLetter]) -> None:
        try:
            records, failures = self._rates.decode_message(msg.value())
        except ValueError as exc:
            dead.append(self._dead(msg, str(exc), msg.value()))
            return
        out.extend(records)
        for failure in failures:
            dead.append(self._dead(msg, failure.reason, failure.payload, failure.element))

    def _decode_fault(self, msg: Message, out: list[FaultEvent], dead: list[DeadLetter]) -> None:
        try:
            out.append(self._faults.decode(msg.value()))
        except ValueError as exc:
            dead.append(self._dead(msg, str(exc), msg.value()))

    def _dead(self, msg: Message, reason: str, payload: bytes | None, element: int = -1) -> DeadLetter:
        return dead_letter_for(
            payload,
            topic=msg.topic() or "",
            stage=STAGE,
            reason=reason,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            element=element,
        )

    # -- output ----------------------------------------------------------------------------------------

    def publish_dead_letters(self, dead: Sequence[DeadLetter]) -> None:
        """Dead letters from elsewhere in the worker (an output that gave up); thread-safe."""
        for letter in dead:
            self.producer.produce(DEAD_LETTERS.name, encode(letter), letter.topic.encode())
        self.producer.poll(0)

    def _publish(self, alerts: Sequence[Alert], dead: Sequence[DeadLetter], now_ms: int) -> None:
        if not alerts and not dead:
            return
        for alert in alerts:
            self.producer.produce(ALERTS.name, encode(alert), alert.fingerprint.encode(), on_delivery=self._delivered)
        for letter in dead:
            self.producer.produce(DEAD_LETTERS.name, encode(letter), letter.topic.encode(), on_delivery=self._delivered)
        remaining = self.producer.flush(60)
        if remaining or self._undelivered:
            # Not acknowledged: stop before anything is checkpointed, so a restart processes them again.
            error = self._undelivered or "timed out"
            raise RuntimeError(f"assurance: alerts or dead letters not delivered to Kafka ({error}); not committed")
        done_ms = int(self.clock() * 1000)
        for alert in alerts:
            if alert.status == "firing" and alert.updated_ms:
                self.stats.alert_latency_s.append(max(0.0, (done_ms - alert.updated_ms) / 1000))
        del self.stats.alert_latency_s[:-10_000]
        self.stats.alerts += len(alerts)
        self.stats.dead_letters += len(dead)
        if alerts and self.on_alerts is not None:
            self.on_alerts(list(alerts))
        if alerts:
            log.info("assurance: %d alert change(s), last %s %s", len(alerts), alerts[-1].name, alerts[-1].status)

    # -- checkpoints -------------------------------------------------------------------------------------

    def checkpoint(self, partitions: Sequence[int]) -> None:
        """Write each partition's state with its offsets, wait for it, then commit those offsets."""
        self._last_checkpoint = time.monotonic()
        commits: list[TopicPartition] = []
        now_ms = int(self.clock() * 1000)
        written: dict[int, Checkpoint] = {}
        for partition in partitions:
            state = self.partitions.get(partition)
            if state is None:
                continue
            offsets = {t: self.positions[(t, partition)] for t in self.inputs if (t, partition) in self.positions}
            data = state.snapshot()
            step = CHECKPOINT_CHUNK_BYTES
            pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
            point = Checkpoint(self.config.group_id, partition, offsets, now_ms, len(pieces), len(data))
            for key, piece in zip(point.chunk_keys(), pieces, strict=True):
                self._produce_checkpoint(key, piece)
            self._produce_checkpoint(self._key(partition), _checkpoint_encoder.encode(point))
            written[partition] = point
            commits += [TopicPartition(t, partition, o) for t, o in offsets.items()]
        if self.producer.flush(60) or self._undelivered:
            error, self._undelivered = self._undelivered or "timed out", ""
            raise RuntimeError(f"assurance: a checkpoint was not delivered to Kafka ({error}); offsets not committed")
        # The new manifests are on the broker: the chunks of the ones they replace can go.
        for partition, point in written.items():
            previous = self._manifests.get(partition)
            if previous is not None and previous.written_ms != point.written_ms:
                for key in previous.chunk_keys():
                    self._produce_checkpoint(key, None)
            self._manifests[partition] = point
        self.producer.poll(0)
        self.stats.checkpoints += 1
        if commits:
            try:
                self.consumer.commit(offsets=commits, asynchronous=False)
            except Exception as exc:  # the checkpoint holds the offsets; the group commit only feeds lag metrics
                log.warning("assurance: offset commit failed (%s); the checkpoint has them", exc)

    def _produce_checkpoint(self, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(ASSURANCE_CHECKPOINTS.name, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._undelivered = str(err)

    def _key(self, partition: int) -> bytes:
        return f"{self.config.group_id}/{partition}".encode()

    def _load_checkpoints(self, partitions: set[int]) -> dict[int, tuple[Checkpoint, bytes]]:
        """The newest complete checkpoint of each partition in ``partitions`` (the topic is read to its end)."""
        reader = Consumer(
            {**self.client_config, "group.id": f"{self.config.group_id}-restore", "enable.auto.commit": False}
        )
        manifests: dict[int, Checkpoint] = {}
        chunks: dict[bytes, bytes] = {}
        try:
            tp = TopicPartition(ASSURANCE_CHECKPOINTS.name, 0)
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            if high <= low:
                return {}
            reader.assign([TopicPartition(ASSURANCE_CHECKPOINTS.name, 0, OFFSET_BEGINNING)])
            wanted = {self._key(p) for p in partitions}
            prefixes = tuple(key + b"/" for key in wanted)
            position = low
            deadline = time.monotonic() + 300
            while position < high:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"assurance: could not read {ASSURANCE_CHECKPOINTS.name} to its end ({position} of {high})"
                    )
                for msg in reader.consume(1000, timeout=1):
                    if msg.error():
                        continue
                    position = (msg.offset() or 0) + 1
                    key, value = msg.key() or b"", msg.value()
                    if key in wanted and value is not None:
                        try:
                            point = _checkpoint_decoder.decode(value)
                        except msgspec.DecodeError as exc:  # ValidationError included: an older format
                            log.warning("assurance: ignoring an unreadable checkpoint %r: %s", key, exc)
                            continue
                        manifests[point.partition] = point
                    elif key.startswith(prefixes):
                        if value is None:
                            chunks.pop(key, None)
                        else:
                            chunks[key] = value
        finally:
            reader.close()
        found: dict[int, tuple[Checkpoint, bytes]] = {}
        for partition, point in manifests.items():
            keys = point.chunk_keys()
            if not all(k in chunks for k in keys):
                log.warning("assurance: the checkpoint of partition %d is incomplete; starting it afresh", partition)
                continue
            data = b"".join(chunks[k] for k in keys)
            if len(data) != point.size:
                log.warning("assurance: the checkpoint of partition %d has the wrong size; starting afresh", partition)
                continue
            found[partition] = (point, data)
        return found

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in assigned}
        new = {p for p in numbers if p not in self.partitions}
        points = self._load_checkpoints(new) if new else {}
        for p in new:
            restored = points.get(p)
            if restored is not None:
                point, data = restored
                self._manifests[p] = point
                try:
                    self.partitions[p] = PartitionAssurance.restore(self.config, data, partition=p)
                except Exception as exc:  # a state this release cannot read: relearn rather than stop for good
                    log.warning(
                        "assurance: cannot restore partition %d from its checkpoint (%s); starting afresh", p, exc
                    )
                    self.partitions[p] = self.state_factory(p)
                    continue
                for topic, offset in point.offsets.items():
                    self.positions[(topic, p)] = offset
                self.stats.restored += 1
                if self.on_restored is not None:
                    self.on_restored(self.partitions[p])
                log.info("assurance: partition %d resumed from a checkpoint of %d", p, point.written_ms)
            else:
                self.partitions[p] = self.state_factory(p)
        for tp in assigned:
            stored = self.positions.get((tp.topic, tp.partition))
            if stored is not None:
                tp.offset = stored
        consumer.assign(assigned)

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in revoked})
        self.checkpoint(numbers)
        for p in numbers:
            self.partitions.pop(p, None)
            self._manifests.pop(p, None)
            for topic in self.inputs:
                self.positions.pop((topic, p), None)
        consumer.unassign()
