"""The faust-streaming app: two agents, each a thin adapter around a pure batch function.

* ``interface_rates``: ``telemetry.samples`` -> counters to rates -> 1-minute windows ->
  ``telemetry.rates.1m``. Per-device state lives in a changelog-backed table, so a restarted worker
  resumes where it stopped; updates are keyed by sample timestamp, so a replay changes nothing.
* ``rate_usage``: ``usage.records`` -> rating engine -> ``usage.rated``.

Anything a stage cannot accept goes to ``ossbss.deadletter`` with the reason. Outputs are sent through
the app's producer, which faust flushes before it commits input offsets: an input is never committed
before what it produced is on the broker (at-least-once, made exact downstream by record ids).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import faust
from aiokafka.partitioner import murmur2

from models.codec import RecordCodec, dead_letter_for, encode
from models.records import TelemetrySample, UsageRecord
from models.topics import DEAD_LETTERS, INTERFACE_RATES_1M, TELEMETRY_SAMPLES, USAGE_RATED, USAGE_RECORDS
from ossbss.config import Config
from rating import load_catalog, rate_usage
from streams.rates import apply_samples, emit_windows

log = logging.getLogger("ossbss.streams")


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default (murmur2) partitioner, as the Java client, aiokafka and librdkafka's murmur2_random use."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StreamStats:
    """Counters of the app, logged periodically."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n


def create_app(config: Config, bootstrap_servers: str) -> faust.App:
    partitions = config.kafka.partitions
    lateness_ms = int(config.streams.allowed_lateness_s * 1000)
    future_ms = int(config.streams.max_future_skew_s * 1000)
    max_usage_age_ms = int(config.streams.max_usage_age_days * 86_400_000)
    datadir = config.var_path / "streams"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.streams.app_id,
        broker=f"kafka://{bootstrap_servers}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=8 * 1024 * 1024,
        broker_commit_interval=1.0,
        datadir=str(datadir),
    )
    samples_topic = app.topic(TELEMETRY_SAMPLES.name, key_type=bytes, value_type=bytes, partitions=partitions)
    usage_topic = app.topic(USAGE_RECORDS.name, key_type=bytes, value_type=bytes, partitions=partitions)
    rates_topic = app.topic(INTERFACE_RATES_1M.name, key_type=bytes, value_type=bytes, partitions=partitions)
    rated_topic = app.topic(USAGE_RATED.name, key_type=bytes, value_type=bytes, partitions=partitions)
    dlq_topic = app.topic(DEAD_LETTERS.name, key_type=bytes, value_type=bytes, partitions=partitions)
    # Keyed by device like the samples topic; the changelog partition is chosen by the same murmur2
    # partitioner, so a device's state recovers on the worker that owns the device's samples.
    interface_state = app.Table(
        "interface-state",
        default=None,
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
        partitions=partitions,
        use_partitioner=True,
    )
    sample_codec = RecordCodec(TelemetrySample)
    usage_codec = RecordCodec(UsageRecord)
    catalog = load_catalog(config.rating.catalog or None)
    stats = StreamStats()
    watermarks: dict[int, int] = {}
    last_seen: dict[int, float] = {}
    devices_by_partition: dict[int, set[str]] = defaultdict(set)

    def dead_letter(value: bytes | None, topic: str, partition: int, offset: int, stage: str, reason: str) -> None:
        dl = dead_letter_for(value, topic=topic, stage=stage, reason=reason, partition=partition, offset=offset)
        dlq_topic.send_soon(key=topic.encode(), value=encode(dl))
        stats.add(f"deadletter.{stage}")

    def publish_windows(device: str, state: dict[str, Any], watermark: int, flush_open: bool) -> int:
        windows = emit_windows(
            device, state, watermark_ms=watermark, allowed_lateness_ms=lateness_ms, flush_open=flush_open
        )
        for window in windows:
            rates_topic.send_soon(key=device.encode(), value=encode(window))
        return len(windows)

    @app.agent(samples_topic)
    async def interface_rates(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            by_device: dict[str, list[TelemetrySample]] = defaultdict(list)
            origin: dict[str, tuple[int, int, bytes | None]] = {}
            batch_max: dict[int, int] = {}
            horizon = int(time.time() * 1000) + future_ms
            for event in events:
                msg = event.message
                try:
                    sample = sample_codec.decode(msg.value)
                    if sample.ts_ms > horizon:
                        raise ValueError(
                            f"timestamp in the future: ts_ms {sample.ts_ms} is more than "
                            f"{future_ms // 1000}s ahead of this worker's clock"
                        )
                except ValueError as exc:
                    dead_letter(msg.value, msg.topic, msg.partition, msg.offset, "interface_rates", str(exc))
                    continue
                by_device[sample.device].append(sample)
                origin[sample.id] = (msg.partition, msg.offset, msg.value)
                batch_max[msg.partition] = max(batch_max.get(msg.partition, 0), sample.ts_ms)
            now = time.monotonic()
            for device, samples in by_device.items():
                partition = partition_for(device.encode(), partitions)
                devices_by_partition[partition].add(device)
                watermark = watermarks.get(partition, 0)
                state = interface_state.get(device) or {}
                result = apply_samples(state, samples, watermark_ms=watermark, allowed_lateness_ms=lateness_ms)
                for late in result.late:
                    part, off, raw = origin[late.id]
                    dead_letter(
                        raw,
                        TELEMETRY_SAMPLES.name,
                        part,
                        off,
                        "interface_rates",
                        f"late sample: ts_ms {late.ts_ms} is older than the watermark {watermark} minus the "
                        f"allowed lateness {lateness_ms} ms",
                    )
                stats.add("samples.applied", result.applied)
                stats.add("samples.duplicate", result.duplicates)
                stats.add("counters.reset", result.resets)
                stats.add("counters.wrap", result.wraps)
                interface_state[device] = state
            for partition, ts in batch_max.items():
                watermarks[partition] = max(watermarks.get(partition, 0), ts)
                last_seen[partition] = now
            # Close the windows the watermark has passed, for every device of the partitions that moved.
            for partition in batch_max:
                wm = watermarks[partition]
                for device in devices_by_partition[partition]:
                    state = interface_state.get(device)
                    if state and publish_windows(device, state, wm, flush_open=False):
                        interface_state[device] = state

    @app.timer(1.0)
    async def flush_idle_windows() -> None:
        # A partition with no new samples for idle_close_s emits its open windows, so dashboards
        # see the last minute even when traffic stops.
        now = time.monotonic()
        for partition, seen in list(last_seen.items()):
            if now - seen < config.streams.idle_close_s:
                continue
            wm = watermarks.get(partition, 0)
            for device in devices_by_partition[partition]:
                state = interface_state.get(device)
                if state and publish_windows(device, state, wm, flush_open=True):
                    interface_state[device] = state
            del last_seen[partition]

    @app.agent(usage_topic)
    async def rate_usage_agent(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            records: list[UsageRecord] = []
            origins = []
            now_ms = int(time.time() * 1000)
            for event in events:
                msg = event.message
                try:
                    record = usage_codec.decode(msg.value)
                    if record.start_ms > now_ms + future_ms:
                        raise ValueError(
                            f"start_ms {record.start_ms} is in the future (more than "
                            f"{future_ms // 1000}s ahead of this worker's clock)"
                        )
                    if record.start_ms < now_ms - max_usage_age_ms:
                        raise ValueError(
                            f"start_ms {record.start_ms} is older than the accepted "
                            f"{config.streams.max_usage_age_days:g} days"
                        )
                    records.append(record)
                    origins.append(msg)
                except ValueError as exc:
                    dead_letter(msg.value, msg.topic, msg.partition, msg.offset, "rating", str(exc))
            if not records:
                continue
            result = rate_usage(records, catalog, rated_at_ms=now_ms)
            for index, reason in result.failures:
                msg = origins[index]
                dead_letter(msg.value, msg.topic, msg.partition, msg.offset, "rating", reason)
            for rated in result.rated:
                rated_topic.send_soon(key=rated.account.encode(), value=encode(rated))
            stats.add("usage.rated", len(result.rated))

    @app.timer(10.0)
    async def log_stats() -> None:
        if stats.counts:
            log.info("streams: %s", dict(stats.counts))

    app.ossbss_stats = stats  # type: ignore[attr-defined]
    return app
